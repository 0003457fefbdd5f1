"""The Debian backend's plan, computed without running anything (pure, unit-tested).

A devcontainer image is three cached layers, each keyed by a content hash of exactly its inputs:

1. ``base``     mmdebstrap rootfs: the image's Debian packages, the user, /workspace, /tmp 1777, the CA layout.
2. ``agents``   the agent CLIs from npm and PyPI (and a Node runtime from npm when Debian's is too old, which then
                removes Debian's node and npm). Committed squashed: one layer with the base's files, so what it
                removes is gone from the image, not hidden under whiteouts (the base layer is cached unchanged).
3. ``policies`` /etc/agent-sandbox/<tier>/ for every shipped tier, the image's own files (images/<image>/rootfs),
                labels and the image config.

A service image (the egress proxy: image.toml `role = "egress-proxy"`) is two: ``base`` (its packages) and
``files`` (images/<image>/rootfs, labels, config).

A key covers its parent's key, so a change in a lower layer rebuilds everything above it, and a change to
the policies alone rebuilds only layer 3. Keys never cover anything that varies between identical builds
(time stamps, the build host's CA bundle).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..images import Catalog, Image, image_tools

# The label names are labels.py's; re-exported because the backend and its tests name them through this module.
from ..labels import (
    LABEL_AGENT_VERSIONS as LABEL_AGENT_VERSIONS,
)
from ..labels import (
    LABEL_AGENTS as LABEL_AGENTS,
)
from ..labels import (
    LABEL_BACKEND as LABEL_BACKEND,
)
from ..labels import (
    LABEL_BASE_NAME as LABEL_BASE_NAME,
)
from ..labels import (
    LABEL_CACHE_KEY as LABEL_CACHE_KEY,
)
from ..labels import (
    LABEL_CREATED as LABEL_CREATED,
)
from ..labels import (
    LABEL_METADATA as LABEL_METADATA,
)
from ..labels import (
    LABEL_POLICIES as LABEL_POLICIES,
)
from ..labels import (
    LABEL_SKIPPED_AGENTS as LABEL_SKIPPED_AGENTS,
)
from ..labels import (
    LABEL_SKIPPED_TOOLS as LABEL_SKIPPED_TOOLS,
)
from ..labels import (
    LABEL_TIER as LABEL_TIER,
)
from ..labels import (
    LABEL_TIERS as LABEL_TIERS,
)
from ..labels import POLICIES_DIR, service_labels
from ..labels import image_labels as build_independent_labels
from ..lock import DEBIAN_MARK, INTEGRITY_MARK, AgentLock, Lock, NpmArtifact, npm_manifest, requirements_text

PHASES = ("base", "agents", "policies")
SERVICE_PHASES = ("base", "files")
DEFAULT_CACHE_REPO = "localhost/agent-sandbox-cache"
KEY_LENGTH = 24

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
MMDEBSTRAP_VARIANT = "minbase"
# Documentation and man pages are not needed by agents; copyright files stay.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# The build hosts' Debian mirrors may serve a snapshot whose Release files are past Valid-Until.
APT_OPTIONS = ('Acquire::Check-Valid-Until "false"', 'Acquire::Check-Date "false"')

# Node: Debian bookworm ships 18; gemini-cli needs >= 20 (its engines field) and the Nix image runs 22.
# When the image's own node is older than NODE_MIN_MAJOR, the official Node build repackaged on the npm
# registry (node-linux-<arch>) is installed under /usr/local (first on PATH); nothing else is reachable.
NODE_MIN_MAJOR = 20
NODE_RUNTIME_SPEC = "22"
# Debian's npm 9 ignores the `libc` field and installs glibc *and* musl builds of native agent binaries
# (claude-code: +370 MB); npm >= 10 installs only the one that runs.
NPM_MIN_MAJOR = 10
NPM_SPEC = "10"
NODE_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}

AIDER_VENV = "/opt/aider"
AGENT_DIR = "/opt"  # npm agents: /opt/<agent> (npm ci of the lock's package-lock.json), PyPI agents: a venv there
LOCK_MOUNT = "/mnt"  # the lock's files for the agents step, mounted read-only (an empty directory in Debian)
BUILD_CA_PATH = "/etc/ssl/certs/ca-certificates.crt"  # where the host bundle is mounted during layer 2
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VERSION_MARK = "@@agent-sandbox-version "


# ------------------------------------------------------------------ values
@attrs.frozen
class Skipped:
    """Something the image description asks for that this backend cannot provide, and why."""

    name: str
    kind: str  # "tool" | "agent"
    reason: str


@attrs.frozen
class AgentInstall:
    """One agent CLI and how it is installed. `spec` is its version in the image's lock."""

    name: str
    registry: str  # "npm" | "pypi"
    package: str
    spec: str
    binary: str

    @property
    def requirement(self) -> str:
        if self.registry == "npm":
            return f"{self.package}@{self.spec}"
        return self.package if self.spec == "latest" else f"{self.package}=={self.spec}"


@attrs.frozen
class User:
    name: str
    uid: int
    gid: int

    @property
    def home(self) -> str:
        return "/root" if self.name == "root" else f"/home/{self.name}"


@attrs.frozen
class TreeFile:
    """A file the last layer adds: its text and mode."""

    text: str
    mode: int = 0o644


@attrs.frozen
class Plan:
    """Everything a build does, decided before anything runs."""

    image: str  # final reference, e.g. localhost/agent-sandbox-devcontainer:latest
    suite: str
    arch: str  # Debian architecture of the build host (amd64, arm64)
    packages: tuple[str, ...]  # sorted, unique
    user: User
    tier: str
    agents: tuple[AgentInstall, ...]
    skipped: tuple[Skipped, ...]
    base_script: str
    agents_script: str
    files: Mapping[str, TreeFile]  # absolute path in the image -> file (the last layer)
    labels: Mapping[str, str]  # without created and agent versions (known only after layer 2)
    config: Mapping[str, Any]  # User, WorkingDir, Env, Cmd
    keys: Mapping[str, str]  # phase -> key
    cache_repo: str = DEFAULT_CACHE_REPO
    phases: tuple[str, ...] = PHASES
    lock_files: Mapping[str, str] = attrs.Factory(dict)  # the agents step's files from the lock (under LOCK_MOUNT)
    versions: Mapping[str, str] = attrs.Factory(dict)  # node, npm and each agent's locked version
    lock: Lock | None = None  # the image's lock (names the component of a failed hash check)

    def cache_ref(self, phase: str) -> str:
        return f"{self.cache_repo}:{phase}-{self.keys[phase]}"

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)


# ------------------------------------------------------------------ package lists
def debian_packages(image: Image, catalog: Catalog) -> tuple[str, ...]:
    """The Debian packages of every tool the image holds, sorted and unique."""
    return tuple(sorted({pkg for tool in image_tools(image, catalog) for pkg in tool.debian}))


def skipped_tools(image: Image, catalog: Catalog) -> tuple[Skipped, ...]:
    """Tools without a Debian package, with the catalog's note as the reason."""
    return tuple(
        Skipped(tool.name, "tool", tool.note or "no Debian package")
        for tool in image_tools(image, catalog)
        if not tool.debian
    )


def agent_installs(
    agents: Sequence[str], catalog: Catalog, lock: Lock
) -> tuple[tuple[AgentInstall, ...], tuple[Skipped, ...]]:
    """Split the requested agents into what npm/PyPI can install (at the lock's versions) and what this backend
    must skip."""
    installs: list[AgentInstall] = []
    skipped: list[Skipped] = []
    for name in dict.fromkeys(agents):
        agent = catalog.agents[name]
        if agent.npm or agent.pypi:
            locked = lock.agents.get(name)
            if locked is None:
                raise ValueError(f"{name} is not in the image's lock")
            installs.append(AgentInstall(name, locked.registry, locked.package, locked.version, agent.binary))
        else:
            skipped.append(Skipped(name, "agent", agent.note or "on no registry reachable from a Debian build"))
    return tuple(installs), tuple(skipped)


def debian_arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# ------------------------------------------------------------------ scripts
def mmdebstrap_sources(suite: str) -> tuple[str, ...]:
    return (
        f"deb {DEBIAN_MIRROR} {suite} main",
        f"deb {DEBIAN_MIRROR} {suite}-updates main",
        f"deb {DEBIAN_SECURITY} {suite}-security main",
    )


def strip_setid_script(root: str = "/") -> str:
    """Clear the setuid and setgid bits of every file on `root`'s filesystem, naming each (sh).

    Debian's packages leave thirteen: su, mount, umount, passwd, chsh, chfn, gpasswd, newgrp, ssh-keysign (setuid
    root) and chage, expiry, unix_chkpwd, ssh-agent (setgid). The agent never needs to become another user or
    group, and in a tier without no-new-privileges (trusted) each is an escalation path; the Nix image has none.
    Nothing upgrades packages in the image afterwards (no apt lists, a non-root agent), so the bits stay off."""
    return (
        f"find {shlex.quote(root)} -xdev -type f -perm /6000 "
        '-exec sh -c \'for f; do echo "setuid/setgid bits cleared: $f"; chmod ug-s "$f"; done\' sh {} +'
    )


def debian_check_lines(packages: Mapping[str, str]) -> str:
    """sh: the rootfs holds exactly `packages` (the lock's), else one DEBIAN_MARK line per difference and exit 1."""
    listed = "\n".join(f"{name} {version}" for name, version in sorted(packages.items()))
    return f"""\
# the Debian packages are exactly the lock's (lock.toml [debian.<arch>]): apt resolved them from today's mirror
dpkg-query -W -f '${{Package}} ${{Version}}\\n' | LC_ALL=C sort > /tmp/installed.txt
LC_ALL=C sort > /tmp/locked.txt <<'AGENT_SANDBOX_LOCKED'
{listed}
AGENT_SANDBOX_LOCKED
if ! cmp -s /tmp/locked.txt /tmp/installed.txt; then
  LC_ALL=C join -a1 -a2 -e '(none)' -o 0,1.2,2.2 /tmp/locked.txt /tmp/installed.txt \\
    | awk '$2 != $3 {{ print "{DEBIAN_MARK}" $1 " " $2 " " $3 }}' >&2
  exit 1
fi
echo "Debian packages as locked: $(wc -l < /tmp/installed.txt)"
"""


def base_script(user: User, debian_versions: Mapping[str, str] | None = None) -> str:
    """Runs as root inside the fresh rootfs (mmdebstrap --customize-hook, via chroot). `debian_versions`: the
    lock's packages, which the rootfs must hold exactly."""
    u = user
    check = debian_check_lines(debian_versions) if debian_versions else ""
    return f"""\
set -eu
{check}# the user the tiers run as ({u.uid}:{u.gid}); home 0700: agents keep credentials there
if ! getent group {u.gid} >/dev/null; then groupadd --gid {u.gid} {u.name}; fi
if ! getent passwd {u.name} >/dev/null; then
  useradd --uid {u.uid} --gid {u.gid} --create-home --home-dir {u.home} --shell /bin/bash {u.name}
fi
chmod 0700 {u.home}
# the workspace belongs to the user; /tmp is 1777 in the image (runc ignores a tmpfs mode= on an existing dir)
install -d -m 0755 -o {u.uid} -g {u.gid} /workspace
chmod 1777 /tmp /var/tmp
# Leash's bootstrap: Debian CA layout (update-ca-certificates reads /usr/local/share/ca-certificates)
install -d -m 0755 /usr/local/share/ca-certificates
test -x /usr/sbin/update-ca-certificates
test -s /etc/ssl/certs/ca-certificates.crt
# names the Nix image uses for Debian's renamed binaries
if [ -x /usr/bin/fdfind ] && [ ! -e /usr/local/bin/fd ]; then ln -s /usr/bin/fdfind /usr/local/bin/fd; fi
if [ -x /usr/bin/batcat ] && [ ! -e /usr/local/bin/bat ]; then ln -s /usr/bin/batcat /usr/local/bin/bat; fi
# no setuid or setgid program (su, mount, passwd, ...): escalation paths the agent never needs
{strip_setid_script()}
# nothing of the build host stays in the image
: > /etc/resolv.conf
echo agent-sandbox > /etc/hostname
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/apt/* /tmp/* /var/tmp/*
"""


# Debian's node and npm, superseded by Node's own build: with npm come some 330 node-* packages (127 MB).
DEBIAN_NODE_PACKAGES = ("nodejs", "npm")


def purge_debian_node_lines(link: str = "/usr/bin/node", node: str = "/usr/local/bin/node") -> list[str]:
    """Once Node's own build and npm >= 10 are under /usr/local, Debian's nodejs and npm (and what only they
    needed) go, unless a package the image asked for needs them: then the build fails rather than lose it.
    /usr/bin/node stays, pointing to the new node (scripts with `#!/usr/bin/node`). The agents layer is committed
    squashed (layers.py), so what goes here leaves the image instead of hiding under whiteouts."""
    names = " ".join(DEBIAN_NODE_PACKAGES)
    keep = " ".join(f"-e {name}" for name in DEBIAN_NODE_PACKAGES)
    return [
        "# Debian's node and npm are superseded: remove them and what only they needed (127 MB)",
        'if [ "$debian_node" = replaced ] && dpkg-query -W nodejs >/dev/null 2>&1; then',
        f"  purge=$(apt-get -s purge --autoremove {names} | sed -n 's/^Purg \\([^ ]*\\).*/\\1/p' | sort)",
        f'  wanted=$(comm -12 <(echo "$purge") <(apt-mark showmanual | grep -vx {keep} | sort))',
        '  if [ -n "$wanted" ]; then',
        '    echo "cannot remove Debian\'s node: the image asks for packages that need it: $wanted" >&2; exit 1',
        "  fi",
        f"  DEBIAN_FRONTEND=noninteractive apt-get purge -qq -y --autoremove {names} >/dev/null",
        '  echo "removed Debian\'s node and npm: $(echo "$purge" | wc -l) packages"',
        f"  ln -sf {node} {link}",
        f'  test "$({link} -p process.versions.node)" = "$(node -p process.versions.node)"',
        "fi",
    ]


def fetch_verified_lines() -> list[str]:
    """sh: `fetch_verified COMPONENT URL SHA512HEX FILE` downloads a file and refuses it (an INTEGRITY_MARK line
    naming the component, exit 1) unless its sha512 is the lock's."""
    return [
        "fetch_verified() {",
        '  curl -fsSL --retry 3 -o "$4" "$2"',
        '  got=$(sha512sum "$4" | cut -d" " -f1)',
        '  if [ "$got" != "$3" ]; then',
        f'    echo "{INTEGRITY_MARK}$1 sha512:$3 sha512:$got" >&2',
        "    exit 1",
        "  fi",
        "}",
    ]


def lock_files(agents: Sequence[AgentInstall], lock: Lock) -> dict[str, str]:
    """The files the agents step installs from, by path under LOCK_MOUNT: per npm agent its package.json and
    package-lock.json (npm ci), per PyPI agent a hashed requirements file (pip --require-hashes)."""
    files: dict[str, str] = {}
    for a in sorted(agents, key=lambda a: a.name):
        locked: AgentLock = lock.agents[a.name]
        if a.registry == "npm":
            files[f"{a.name}/package.json"] = npm_manifest(locked)
            files[f"{a.name}/package-lock.json"] = locked.package_lock
        else:
            files[f"{a.name}/requirements.txt"] = requirements_text(locked)
    return files


def agents_script(agents: Sequence[AgentInstall], arch: str, lock: Lock) -> str:
    """Runs as root in a container from layer 1, with the lock's files (lock_files) at LOCK_MOUNT. Installs only
    what the lock names and checks every hash: Node and npm by the sha512 of their tarballs, npm agents with
    `npm ci` (an integrity per package), PyPI agents with `pip --require-hashes`. Prints VERSION_MARK lines.
    The registries are npm's and PyPI's unless AGENT_SANDBOX_NPM_REGISTRY / AGENT_SANDBOX_PYPI_INDEX are exported
    before it (a mirror serves the same bytes or fails the hashes)."""
    agents = sorted(agents, key=lambda a: a.name)  # the request's order must not change the script (its key)
    npm = [a for a in agents if a.registry == "npm"]
    pypi = [a for a in agents if a.registry == "pypi"]
    lines = [
        "set -eu",
        "export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false",
        "export npm_config_loglevel=warn PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
        f'mark() {{ echo "{VERSION_MARK}$1=$2"; }}',
    ]
    if npm:
        assert lock.node is not None and lock.npm is not None, "a lock with npm agents locks node and npm"
        node: NpmArtifact = lock.node.builds[debian_arch(arch)]
        npm_pkg = lock.npm.artifact
        lines += fetch_verified_lines()
        lines += [
            'registry="${AGENT_SANDBOX_NPM_REGISTRY:-https://registry.npmjs.org/}"; registry="${registry%/}"',
            'export npm_config_registry="$registry/"',
            "dl=$(mktemp -d)",
            "# Node's own build, repackaged on the npm registry (Debian's node is too old): the locked tarball only",
            f'fetch_verified {node.package}@{node.version} "$registry/{node.tarball_path}" {node.sha512_hex} '
            '"$dl/node.tgz"',
            'npm install -g --offline "$dl/node.tgz"',
            "hash -r",
            f'test "$(node -p process.versions.node)" = {shlex.quote(node.version)}',
            "debian_node=replaced",
            "# npm from the registry too: Debian's npm 9 ignores `libc` and installs glibc and musl binaries",
            f'fetch_verified npm@{npm_pkg.version} "$registry/{npm_pkg.tarball_path}" {npm_pkg.sha512_hex} '
            '"$dl/npm.tgz"',
            'npm install -g --offline "$dl/npm.tgz"',
            "hash -r",
            f'test "$(npm --version)" = {shlex.quote(npm_pkg.version)}',
            'rm -rf "$dl"',
            'mark node "$(node -p process.versions.node)"',
            'mark npm "$(npm --version)"',
        ]
        for a in npm:
            home = f"{AGENT_DIR}/{a.name}"
            lines += [
                f"# {a.name}: npm ci of the lock's package-lock.json (an integrity per package, the whole tree)",
                f"install -d {home}",
                f"cp {LOCK_MOUNT}/{a.name}/package.json {LOCK_MOUNT}/{a.name}/package-lock.json {home}/",
                f"(cd {home} && npm ci --omit=dev)",
                f"ln -sf {home}/node_modules/.bin/{a.binary} /usr/local/bin/{a.binary}",
                f'mark {a.name} "$(node -p "require(process.argv[1]).version" '
                f'{home}/node_modules/{a.package}/package.json)"',
            ]
        lines += purge_debian_node_lines()
    if pypi:
        lines += [
            'if [ -n "${AGENT_SANDBOX_PYPI_INDEX:-}" ]; then export PIP_INDEX_URL="$AGENT_SANDBOX_PYPI_INDEX"; fi',
            f"python3 -m venv {AIDER_VENV}",
        ]
        for a in pypi:
            lines += [
                f"# {a.name}: every package of the venv from the lock, each wheel's sha256 checked",
                f"{AIDER_VENV}/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: "
                f"-r {LOCK_MOUNT}/{a.name}/requirements.txt",
                f"ln -sf {AIDER_VENV}/bin/{a.binary} /usr/local/bin/{a.binary}",
                f"mark {a.name} \"$({AIDER_VENV}/bin/python -c 'import sys, importlib.metadata as m; "
                f"print(m.version(sys.argv[1]))' {shlex.quote(a.package)})\"",
            ]
        lines.append(f"{AIDER_VENV}/bin/pip check")
    lines.append("# every agent starts (as root here; HOME is a scratch dir so nothing is written to /root)")
    lines.append("export HOME=$(mktemp -d)")
    for a in agents:
        lines.append(f"{a.binary} --version")
    lines.append('rm -rf "$HOME" /root/.npm /root/.cache /root/.config /tmp/* /var/tmp/*')
    return "\n".join(lines) + "\n"


def parse_versions(output: str) -> dict[str, str]:
    """The VERSION_MARK lines of the agents script's output."""
    versions: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(VERSION_MARK):
            name, _, version = line[len(VERSION_MARK) :].strip().partition("=")
            versions[name] = version
    return versions


def format_versions(versions: Mapping[str, str]) -> str:
    return ",".join(f"{name}={version}" for name, version in versions.items())


def containerfile(parent: str, config: Mapping[str, Any]) -> str:
    """The last layer as a Containerfile (docker engine; podman uses buildah copy/config to the same effect): the
    tree under rootfs/ and the image config. Labels go as `build --label` flags (literal values)."""
    env = " ".join(f"{name}={json.dumps(value)}" for name, value in config["Env"].items())
    entrypoint = f"ENTRYPOINT {json.dumps(config['Entrypoint'])}\n" if "Entrypoint" in config else ""
    return (
        f"FROM {parent}\n"
        "COPY rootfs/ /\n"
        f"ENV {env}\n"
        f"WORKDIR {config['WorkingDir']}\n"
        f"USER {config['User']}\n"
        f"{entrypoint}"
        f"CMD {json.dumps(config['Cmd'])}\n"
    )


# ------------------------------------------------------------------ labels and config
# The image's user is root so that Leash's bootstrap can install its CA (leash-entry runs as the image's USER and
# needs root); a root login shell continues as the sandbox user (images/<image>/rootfs/etc/profile.d/00-...),
# and agent-sandbox's runs and devcontainers start as the sandbox user (`--user`, containerUser).
IMAGE_USER = "0:0"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def image_config(user: User) -> dict[str, Any]:
    return {
        "User": IMAGE_USER,
        "WorkingDir": "/workspace",
        "Env": {
            "PATH": PATH,
            "HOME": user.home,
            "USER": user.name,
            # the system bundle (a CA Leash installs counts) for OpenSSL, curl, Python's requests and pip
            "SSL_CERT_FILE": CA_BUNDLE,
            "REQUESTS_CA_BUNDLE": CA_BUNDLE,
        },
        "Cmd": ["bash", "-l"],
    }


def image_labels(
    image: Image,
    catalog: Catalog,
    *,
    tier: str,
    tiers: Sequence[str],
    metadata: Any,
    agents: Sequence[str],
    skipped: Sequence[Skipped],
    revision: str,
    version: str,
) -> dict[str, str]:
    """The final image's labels, except `created` and the agent versions (added at build time): labels.py's
    build-independent ones, and the Debian suite it starts from."""
    labels = build_independent_labels(
        image,
        catalog,
        tier=tier,
        tiers=tiers,
        metadata=metadata,
        agents=agents,
        skipped_tools=[s.name for s in skipped if s.kind == "tool"],
        skipped_agents=[s.name for s in skipped if s.kind == "agent"],
        backend="debian",
        revision=revision,
        version=version,
    )
    labels[LABEL_BASE_NAME] = f"debian:{image.debian_suite}"
    return labels


def policy_files(tier_files: Mapping[str, Mapping[str, str]]) -> dict[str, TreeFile]:
    """{tier: {file: text}} -> {"/etc/agent-sandbox/<tier>/<file>": file}, sorted."""
    return {
        f"{POLICIES_DIR}/{tier}/{name}": TreeFile(text)
        for tier in sorted(tier_files)
        for name, text in sorted(tier_files[tier].items())
    }


# ------------------------------------------------------------------ keys
def content_key(value: Any) -> str:
    """A short, stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def base_key(suite: str, arch: str, packages: Sequence[str], user: User, script: str) -> str:
    return content_key(
        {
            "phase": "base",
            "suite": suite,
            "arch": arch,
            "sources": mmdebstrap_sources(suite),
            "variant": MMDEBSTRAP_VARIANT,
            "dpkg": DPKG_OPTIONS,
            "packages": sorted(packages),
            "user": [user.name, user.uid, user.gid],
            "script": script,
        }
    )


def agents_key(parent: str, agents: Sequence[AgentInstall], script: str, files: Mapping[str, str]) -> str:
    """Covers the lock's part this layer installs: the versions and hashes in the script, the files it installs
    from (npm lockfiles, hashed requirements)."""
    return content_key(
        {
            "phase": "agents",
            "parent": parent,
            "agents": sorted([a.name, a.registry, a.package, a.spec] for a in agents),
            "script": script,
            "lock": dict(sorted(files.items())),
        }
    )


def policies_key(
    parent: str,
    files: Mapping[str, TreeFile],
    labels: Mapping[str, str],
    config: Mapping[str, Any],
    phase: str = "policies",
) -> str:
    return content_key(
        {
            "phase": phase,
            "parent": parent,
            "files": {path: [f.text, f.mode] for path, f in sorted(files.items())},
            "labels": {k: v for k, v in labels.items() if k != LABEL_CREATED},
            "containerfile": containerfile("PARENT", config),
        }
    )


# ------------------------------------------------------------------ the plan
def make_plan(
    image: Image,
    catalog: Catalog,
    *,
    agents: Sequence[str],
    tier: str,
    user_name: str,
    tier_files: Mapping[str, Mapping[str, str]],
    metadata: Any,
    revision: str,
    version: str,
    machine: str = "x86_64",
    lock: Lock,
    cache_repo: str = DEFAULT_CACHE_REPO,
    tree: Mapping[str, TreeFile] | None = None,
) -> Plan:
    """`tree`: the image's own files (images/<image>/rootfs), added in the last layer with the tiers' files.
    `lock`: the image's lock (lock.toml), which covers `agents` and this architecture's Debian packages."""
    user = User(user_name, image.uid, image.gid)
    arch = debian_arch(machine)
    packages = debian_packages(image, catalog)
    installs, skipped_agents = agent_installs(agents, catalog, lock)
    skipped = skipped_tools(image, catalog) + skipped_agents
    b_script = base_script(user, locked_debian(lock, arch))
    a_script = agents_script(installs, machine, lock)
    a_files = lock_files(installs, lock)
    files = {**policy_files(tier_files), **(tree or {})}
    labels = image_labels(
        image,
        catalog,
        tier=tier,
        tiers=sorted(tier_files),
        metadata=metadata,
        agents=[a.name for a in installs],
        skipped=skipped,
        revision=revision,
        version=version,
    )
    config = image_config(user)
    k1 = base_key(image.debian_suite, arch, packages, user, b_script)
    k2 = agents_key(k1, installs, a_script, a_files)
    k3 = policies_key(k2, files, labels, config)
    return Plan(
        image=image.local_reference,
        suite=image.debian_suite,
        arch=arch,
        packages=packages,
        user=user,
        tier=tier,
        agents=installs,
        skipped=skipped,
        base_script=b_script,
        agents_script=a_script,
        files=files,
        labels=labels,
        config=config,
        keys={"base": k1, "agents": k2, "policies": k3},
        cache_repo=cache_repo,
        lock_files=a_files,
        versions=lock.versions([a.name for a in installs], arch),
        lock=lock,
    )


def locked_debian(lock: Lock | None, arch: str) -> dict[str, str]:
    """The lock's Debian packages for `arch` (the base layer must hold exactly these); none without a lock."""
    if lock is None or arch not in lock.debian:
        return {}
    return dict(lock.debian[arch].packages)


def service_base_script(image: Image, debian_versions: Mapping[str, str] | None = None) -> str:
    """Runs as root inside a service image's fresh rootfs: its packages made their own users; nothing of the build
    host stays. `debian_versions`: the lock's packages, which the rootfs must hold exactly."""
    dirs = "".join(f"install -d -m 0700 -o {image.uid} -g {image.gid} {d}\n" for d in image.state_dirs)
    check = debian_check_lines(debian_versions) if debian_versions else ""
    return f"""\
set -eu
{check}chmod 1777 /tmp /var/tmp
{dirs}: > /etc/resolv.conf
echo {image.name} > /etc/hostname
rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* /var/log/apt/* /tmp/* /var/tmp/*
"""


def service_config(image: Image) -> dict[str, Any]:
    """A service image runs its entrypoint as its user (image.toml `user`, `uid`, `gid`, `entrypoint`)."""
    return {
        "User": f"{image.uid}:{image.gid}",
        "WorkingDir": "/",
        "Env": {"PATH": PATH},
        "Entrypoint": list(image.entrypoint),
        "Cmd": [],
    }


def make_service_plan(
    image: Image,
    catalog: Catalog,
    *,
    revision: str,
    version: str,
    tree: Mapping[str, TreeFile],
    machine: str = "x86_64",
    cache_repo: str = DEFAULT_CACHE_REPO,
    lock: Lock | None = None,
) -> Plan:
    """A service image (the egress proxy): its packages (layer `base`), its files, labels and config (`files`)."""
    user = User(image.user, image.uid, image.gid)
    arch = debian_arch(machine)
    packages = debian_packages(image, catalog)
    script = service_base_script(image, locked_debian(lock, arch))
    labels = service_labels(image, backend="debian", revision=revision, version=version)
    labels[LABEL_BASE_NAME] = f"debian:{image.debian_suite}"
    config = service_config(image)
    k1 = base_key(image.debian_suite, arch, packages, user, script)
    k2 = policies_key(k1, tree, labels, config, phase="files")
    return Plan(
        image=image.local_reference,
        suite=image.debian_suite,
        arch=arch,
        packages=packages,
        user=user,
        tier="",
        agents=(),
        skipped=skipped_tools(image, catalog),
        base_script=script,
        agents_script="",
        files=dict(tree),
        labels=labels,
        config=config,
        keys={"base": k1, "files": k2},
        cache_repo=cache_repo,
        phases=SERVICE_PHASES,
        lock=lock,
    )


def render_plan(plan: Plan, *, engine: str, build_ca: str | None) -> str:
    """What a dry run prints."""
    out = [
        f"image    {plan.image}  (engine {engine}, Debian {plan.suite}/{plan.arch})",
        f"user     {plan.user.name} {plan.user.uid}:{plan.user.gid}  home {plan.user.home}  tier {plan.tier}",
        "",
        f"1. base      {plan.cache_ref('base')}",
        f"   mmdebstrap --variant={MMDEBSTRAP_VARIANT} {plan.suite}: {len(plan.packages)} packages",
        "   " + " ".join(plan.packages),
    ]
    if "agents" in plan.phases:
        out.append(f"2. agents    {plan.cache_ref('agents')}")
        for name in ("node", "npm"):
            if name in plan.versions:
                out.append(f"   npm   {name} {plan.versions[name]} (sha512 from the lock)")
        for a in plan.agents:
            how = "npm ci, integrity per package" if a.registry == "npm" else "pip --require-hashes"
            out.append(f"   {a.registry:5} {a.requirement} ({how})")
        if not plan.agents:
            out.append("   (none)")
        out.append(f"   build-time CA bundle: {build_ca or 'none'} (mounted read-only for this step only)")
    last = plan.phases[-1]
    out.append(f"{len(plan.phases)}. {last:<9} {plan.cache_ref(last)}")
    tiers = sorted({path.split("/")[3] for path in plan.files if path.startswith(POLICIES_DIR + "/")})
    if tiers:
        count = sum(1 for p in plan.files if p.startswith(POLICIES_DIR))
        out.append(f"   {POLICIES_DIR}/{{{','.join(tiers)}}}/: {count} files")
    out += [f"   {path} ({f.mode:o})" for path, f in plan.files.items() if not path.startswith(POLICIES_DIR)]
    for name, value in plan.labels.items():
        shown = value if len(value) <= 70 else value[:67] + "..."
        out.append(f"   label {name}={shown}")
    out.append(
        f"   config User={plan.config['User']} WorkingDir={plan.config['WorkingDir']} "
        f"Entrypoint={plan.config.get('Entrypoint', [])} Cmd={plan.config['Cmd']}"
    )
    out.append(f"=> tag {plan.image}")
    if plan.skipped:
        out.append("")
        out.append("skipped (this backend cannot provide them):")
        for s in plan.skipped:
            out.append(f"   {s.kind:5} {s.name}: {s.reason}")
    return "\n".join(out) + "\n"
