"""An image's lock (images/<image>/lock.toml): the exact version and the registry's integrity hash of everything the
Debian build downloads (pure: the model, reading and writing it, what changed, what the build installs from it).

What an image holds stays in image.toml and catalog.toml; the lock holds only what those resolved to:

    [node]              Node's own build, repackaged on the npm registry (node-linux-<arch>): version, and per
                        Debian architecture the package and its `dist.integrity` (sha512)
    [npm]               npm itself: version, `dist.integrity`
    [agents.<name>]     an npm agent: package, version, `dist.integrity`, and its whole dependency tree as an npm
                        lockfile (lockfileVersion 3, an integrity per package) in package-locks/<name>.json,
                        whose sha256 the lock records; a PyPI agent: package, version, and every package its
                        virtualenv gets ([agents.<name>.python.<package>]: version and the sha256 of each wheel
                        PyPI serves for it that can install on the image)
    [debian.<arch>]     the Debian packages mmdebstrap resolves for the base layer, with their versions

Registries are queried by lockresolve.py (the side effects); the build (backends/debian_plan.py) installs from a
Lock and verifies every hash, and a mismatch names its component (`integrity_failure`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import tomlkit
from tomlkit.exceptions import TOMLKitError

from .errors import InputError, Location, SandboxError
from .fsutil import atomic_write, read_user_file
from .paths import project_root

LOCK_NAME = "lock.toml"
PACKAGE_LOCKS = "package-locks"  # beside lock.toml: <agent>.json, npm lockfiles
FORMAT = 1

HEADER = """\
{path}
Written by `agent-sandbox lock` (do not edit by hand): the exact version and the registry's integrity hash
of everything the Debian build of this image downloads. What the image holds is image.toml's and
catalog.toml's; this file holds only what those resolved to (docs/debian-backend.md, "The lock").
Refresh:  agent-sandbox lock {image} --update [NAME[=VERSION]...]
Verify:   agent-sandbox lock {image} --check
"""


# ------------------------------------------------------------------ the model
@attrs.frozen
class NpmArtifact:
    """One npm package version and the registry's `dist.integrity` of its tarball (sha512 SRI)."""

    package: str
    version: str
    integrity: str

    @property
    def tarball_path(self) -> str:
        """The tarball's path under a registry's base URL (npm's layout, scoped or not)."""
        return f"{self.package}/-/{self.package.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def sha512_hex(self) -> str:
        return sri_hex(self.integrity)


@attrs.frozen
class NodeLock:
    """Node's own build from the npm registry (node-linux-<arch>): one version, one package per architecture."""

    spec: str  # what was asked for (debian_plan.NODE_RUNTIME_SPEC), e.g. "22"
    version: str
    builds: Mapping[str, NpmArtifact]  # Debian architecture -> package


@attrs.frozen
class NpmLock:
    spec: str
    artifact: NpmArtifact


@attrs.frozen
class PythonPackage:
    """A package of a PyPI agent's virtualenv: its version and the sha256 of each wheel it may install from."""

    name: str
    version: str
    wheels: Mapping[str, str]  # file name -> sha256 (hex)


@attrs.frozen
class AgentLock:
    name: str
    registry: str  # "npm" | "pypi"
    package: str
    version: str
    integrity: str = ""  # npm: the package's dist.integrity
    package_lock: str = ""  # npm: the lockfile's text (package-locks/<name>.json)
    python: tuple[PythonPackage, ...] = ()  # pypi: every package of the virtualenv, sorted by name

    def tree(self) -> dict[str, str]:
        """Every package this agent installs -> its version (npm: the lockfile's packages; pypi: the venv's)."""
        if self.registry == "npm":
            return {e.path: e.version for e in npm_tree(self.package_lock)}
        return {p.name: p.version for p in self.python}


@attrs.frozen
class DebianLock:
    suite: str
    arch: str
    packages: Mapping[str, str]  # name -> version, sorted
    include: tuple[str, ...] = ()  # what the image asked for (mmdebstrap --include): another list is re-resolved


@attrs.frozen
class Lock:
    image: str
    node: NodeLock | None = None
    npm: NpmLock | None = None
    agents: Mapping[str, AgentLock] = attrs.Factory(dict)
    debian: Mapping[str, DebianLock] = attrs.Factory(dict)  # arch -> packages

    def evolve(self, **changes: Any) -> Lock:
        return attrs.evolve(self, **changes)

    def versions(self, agents: Sequence[str], arch: str) -> dict[str, str]:
        """What the image's label says: node, npm (when an npm agent is installed) and each agent's version."""
        out: dict[str, str] = {}
        npm_agents = [a for a in agents if a in self.agents and self.agents[a].registry == "npm"]
        if npm_agents and self.node is not None and self.npm is not None:
            out["node"] = self.node.version
            out["npm"] = self.npm.artifact.version
        for name in agents:
            if name in self.agents:
                out[name] = self.agents[name].version
        return out


# ------------------------------------------------------------------ hashes
def sri_hex(integrity: str) -> str:
    """`sha512-<base64>` -> the hex digest (what sha512sum prints)."""
    algo, _, digest = integrity.partition("-")
    if algo != "sha512" or not digest:
        raise ValueError(f"not a sha512 integrity: {integrity!r}")
    return base64.b64decode(digest).hex()


def sri_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ npm lockfiles
@attrs.frozen
class NpmEntry:
    """A package of an npm lockfile: where it installs (`node_modules/` left out), the registry's name for it (an
    alias installs a package under another name), its version and integrity ("" when bundled in another's)."""

    path: str
    name: str
    version: str
    integrity: str


def npm_tree(package_lock: str) -> list[NpmEntry]:
    """Every package an npm lockfile (v3) installs, in its order."""
    data = json.loads(package_lock)
    out = []
    for path, entry in (data.get("packages") or {}).items():
        if not path or entry.get("link"):
            continue
        short = path.replace("node_modules/", "")
        name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
        out.append(NpmEntry(short, name, str(entry.get("version", "")), str(entry.get("integrity", ""))))
    return out


def npm_manifest(agent: AgentLock) -> str:
    """The package.json `npm ci` installs the lockfile with: the lockfile's own root entry."""
    data = json.loads(agent.package_lock)
    root = (data.get("packages") or {}).get("", {})
    manifest = {
        "name": root.get("name") or data.get("name"),
        "private": True,
        "dependencies": root.get("dependencies", {}),
    }
    return json.dumps(manifest, indent=2) + "\n"


def check_package_lock(agent: AgentLock, where: Location) -> None:
    """The lockfile is version 3, names exactly the agent's package at its version, and every package in it that
    is not bundled in another has a sha512 integrity."""
    try:
        data = json.loads(agent.package_lock)
    except json.JSONDecodeError as exc:
        raise InputError(f"{agent.name}'s npm lockfile is not JSON: {exc}", where) from None
    if data.get("lockfileVersion") != 3:
        raise InputError(f"{agent.name}'s npm lockfile is not lockfileVersion 3", where)
    packages = data.get("packages") or {}
    if packages.get("", {}).get("dependencies") != {agent.package: agent.version}:
        raise InputError(f"{agent.name}'s npm lockfile does not install exactly {agent.package}@{agent.version}", where)
    top = packages.get(f"node_modules/{agent.package}", {})
    if top.get("version") != agent.version or top.get("integrity") != agent.integrity:
        raise InputError(f"{agent.name}'s npm lockfile disagrees with lock.toml about {agent.package}", where)
    for path, entry in packages.items():
        if path and not entry.get("inBundle") and not entry.get("link"):
            if not str(entry.get("integrity", "")).startswith("sha512-"):
                raise InputError(f"{agent.name}'s npm lockfile has no sha512 integrity for {path}", where)


# ------------------------------------------------------------------ PyPI
def requirements_text(agent: AgentLock) -> str:
    """A hashed requirements file (pip install --require-hashes --no-deps): every package, every wheel's hash."""
    lines = [f"# {agent.name}: {agent.package}=={agent.version} and every package of its virtualenv (lock.toml)"]
    for p in agent.python:
        hashes = " ".join(f"--hash=sha256:{digest}" for digest in sorted(set(p.wheels.values())))
        lines.append(f"{p.name}=={p.version} {hashes}")
    return "\n".join(lines) + "\n"


_WHEEL = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?-(?P<py>[^-]+)-(?P<abi>[^-]+)"
    r"-(?P<plat>[^-]+)\.whl$"
)


def wheel_fits(filename: str, python: str, arches: Sequence[str] = ("x86_64", "aarch64")) -> bool:
    """Whether a wheel can install on the image: CPython `python` (e.g. "3.11") on glibc Linux, one of `arches`.

    Pure wheels, `py3`/`cp311` wheels, and abi3 wheels for an older CPython 3; manylinux/linux platforms only (no
    musl, macOS, Windows). A wheel this lets through that pip would not pick costs nothing; one it wrongly drops
    makes pip refuse the install (--require-hashes), never install something unverified."""
    match = _WHEEL.match(filename)
    if not match:
        return False
    major, minor = (int(x) for x in python.split(".")[:2])
    pys, abis, plats = (match[k].split(".") for k in ("py", "abi", "plat"))
    cp = f"cp{major}{minor}"
    py_ok = any(t in (f"py{major}", f"py{major}{minor}", cp) for t in pys)
    if "abi3" in abis:
        py_ok = py_ok or any(t.startswith(f"cp{major}") and t[2:].isdigit() and int(t[3:] or 0) <= minor for t in pys)
    abi_ok = any(a in ("none", "abi3", cp) for a in abis)
    plat_ok = "any" in plats or any(p.startswith(("manylinux", "linux_")) and p.endswith(tuple(arches)) for p in plats)
    return py_ok and abi_ok and plat_ok


# ------------------------------------------------------------------ integrity failures
_NPM_EINTEGRITY = re.compile(
    r"(sha512-[A-Za-z0-9+/=]+) integrity checksum failed when using sha512: wanted "
    r"(sha512-[A-Za-z0-9+/=]+) but got (sha512-[A-Za-z0-9+/=]+)"
)
_PIP_MISMATCH = re.compile(r"^\s+(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+) from (?P<url>\S+)( \(from .*\))?:?$")
INTEGRITY_MARK = "@@agent-sandbox-integrity "  # printed by the agents script: <component> <wanted> <got>
DEBIAN_MARK = "@@agent-sandbox-debian "  # printed by the base script: <package> <locked> <installed>


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def integrity_failure(lines: Iterable[str], lock: Lock) -> str | None:
    """The one line naming the component whose download did not match the lock, from a failed step's output
    (npm ci's EINTEGRITY, pip's hash mismatch, the script's own checks), or None if nothing there is one."""
    lines = list(lines)
    for line in lines:
        if line.startswith(INTEGRITY_MARK):
            component, wanted, got = (line[len(INTEGRITY_MARK) :].split() + ["?", "?"])[:3]
            return (
                f"integrity check failed: {component}: the download's sha512 is {got}, the lock says {wanted}; "
                "nothing was tagged"
            )
        if line.startswith(DEBIAN_MARK):
            package, locked, installed = (line[len(DEBIAN_MARK) :].split() + ["?", "?"])[:3]
            return (
                f"Debian package {package}: the lock says {locked}, the mirror installed {installed} "
                f"(run `agent-sandbox lock {lock.image} --update debian`); nothing was tagged"
            )
        found = _NPM_EINTEGRITY.search(line)
        if found:
            wanted = found[2]
            for agent in lock.agents.values():
                for e in npm_tree(agent.package_lock) if agent.registry == "npm" else []:
                    if e.integrity == wanted:
                        return (
                            f"integrity check failed: npm package {e.name}@{e.version} (agent {agent.name}): "
                            f"the download is {found[3]}, the lock says {wanted}; nothing was tagged"
                        )
            return f"integrity check failed: an npm package: the download is {found[3]}, the lock says {wanted}"
    for i, line in enumerate(lines):
        found = _PIP_MISMATCH.match(line)
        if found and any("Expected sha256" in later for later in lines[i + 1 : i + 3]):
            for agent in lock.agents.values():
                for p in agent.python:
                    if _normal(p.name) == _normal(found["name"]) and p.version == found["version"]:
                        got = next((later.split()[-1] for later in lines[i + 1 : i + 4] if "Got" in later), "?")
                        return (
                            f"integrity check failed: PyPI package {p.name}=={p.version} (agent {agent.name}): "
                            f"the download's sha256 is {got}, not one the lock lists; nothing was tagged"
                        )
    return None


# ------------------------------------------------------------------ reading and writing
def lock_path(image_path: Path) -> Path:
    """images/<image>/lock.toml for an image whose description is images/<image>/image.toml."""
    return image_path.parent / LOCK_NAME


def read_lock(path: Path, image: str) -> Lock | None:
    """The lock at `path`, or None when there is none. A malformed one is an InputError naming file and key."""
    if not path.exists():
        return None
    text = read_user_file(path)
    try:
        data = tomlkit.parse(text).unwrap()
    except TOMLKitError as exc:
        raise InputError(f"malformed TOML: {exc}; run `agent-sandbox lock {image} --update`", Location(path)) from None
    try:
        return _from_data(data, path, image)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"not a lock this version reads ({type(exc).__name__}: {exc}); run `agent-sandbox lock {image} --update`",
            Location(path),
        ) from None


def _from_data(data: Mapping[str, Any], path: Path, image: str) -> Lock:
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
    node = None
    if "node" in data:
        n = data["node"]
        builds = {
            arch: NpmArtifact(b["package"], n["version"], b["integrity"])
            for arch, b in n.items()
            if isinstance(b, Mapping)
        }
        node = NodeLock(n["spec"], n["version"], builds)
    npm = None
    if "npm" in data:
        npm = NpmLock(data["npm"]["spec"], NpmArtifact("npm", data["npm"]["version"], data["npm"]["integrity"]))
    agents: dict[str, AgentLock] = {}
    for name, a in (data.get("agents") or {}).items():
        where = Location(path, 0, f"agents.{name}")
        if a["registry"] == "npm":
            lock_file = path.parent / a["package_lock"]
            text = read_user_file(lock_file)
            if sha256_text(text) != a["package_lock_sha256"]:
                raise InputError(
                    f"{lock_file.name} is not the lockfile lock.toml names (its sha256 differs); "
                    f"run `agent-sandbox lock {image} --update {name}`",
                    where,
                )
            agent = AgentLock(name, "npm", a["package"], a["version"], a["integrity"], text)
            check_package_lock(agent, where)
        elif a["registry"] == "pypi":
            python = tuple(
                PythonPackage(pkg, p["version"], dict(p["wheels"]))
                for pkg, p in sorted((a.get("python") or {}).items())
            )
            agent = AgentLock(name, "pypi", a["package"], a["version"], python=python)
            if not any(_normal(p.name) == _normal(agent.package) and p.version == agent.version for p in python):
                raise InputError(f"{name}'s packages do not include {agent.package}=={agent.version}", where)
            empty = [p.name for p in python if not p.wheels]
            if empty:
                raise InputError(f"{name}: no hash for {', '.join(empty)}", where)
        else:
            raise ValueError(f"agents.{name}: unknown registry {a['registry']!r}")
        agents[name] = agent
    debian = {
        arch: DebianLock(d["suite"], arch, dict(d["packages"]), tuple(d.get("include", ())))
        for arch, d in (data.get("debian") or {}).items()
    }
    return Lock(str(data.get("image", image)), node, npm, agents, debian)


def shown_path(path: Path) -> str:
    """The lock's path from the project's root (the header names it), else from its image's parent."""
    try:
        return path.resolve().relative_to(project_root().resolve()).as_posix()
    except (ValueError, SandboxError):
        return f"{path.parent.parent.name}/{path.parent.name}/{path.name}"


def render(lock: Lock, path: Path) -> tuple[str, dict[str, str]]:
    """The lock's TOML text and the npm lockfiles beside it ({relative path: text})."""
    doc = tomlkit.document()
    for line in HEADER.format(path=shown_path(path), image=lock.image).splitlines():
        doc.add(tomlkit.comment(line))
    doc.add("format", FORMAT)
    doc.add("image", lock.image)
    files: dict[str, str] = {}
    if lock.node is not None:
        node = tomlkit.table()
        node.add(tomlkit.comment("Node's own build, repackaged on the npm registry (nodejs.org is not reachable)"))
        node.add("spec", lock.node.spec)
        node.add("version", lock.node.version)
        for arch, build in sorted(lock.node.builds.items()):
            t = tomlkit.table()
            t.add("package", build.package)
            t.add("integrity", build.integrity)
            node.add(arch, t)
        doc.add("node", node)
    if lock.npm is not None:
        npm = tomlkit.table()
        npm.add("spec", lock.npm.spec)
        npm.add("version", lock.npm.artifact.version)
        npm.add("integrity", lock.npm.artifact.integrity)
        doc.add("npm", npm)
    agents = tomlkit.table(is_super_table=True)
    for name, agent in sorted(lock.agents.items()):
        t = tomlkit.table()
        t.add("registry", agent.registry)
        t.add("package", agent.package)
        t.add("version", agent.version)
        if agent.registry == "npm":
            rel = f"{PACKAGE_LOCKS}/{name}.json"
            files[rel] = agent.package_lock
            t.add("integrity", agent.integrity)
            t.add("package_lock", rel)
            t.add("package_lock_sha256", sha256_text(agent.package_lock))
        else:
            python = tomlkit.table(is_super_table=True)
            for p in agent.python:
                entry = tomlkit.table()
                entry.add("version", p.version)
                wheels = tomlkit.table()
                for filename, digest in sorted(p.wheels.items()):
                    wheels.add(filename, digest)
                entry.add("wheels", wheels)
                python.add(p.name, entry)
            t.add("python", python)
        agents.add(name, t)
    if lock.agents:
        doc.add("agents", agents)
    debian = tomlkit.table(is_super_table=True)
    for arch, d in sorted(lock.debian.items()):
        t = tomlkit.table()
        t.add(
            tomlkit.comment(
                "what mmdebstrap resolved from the mirror; the build checks the base layer holds exactly these"
            )
        )
        t.add("suite", d.suite)
        include = tomlkit.array()
        include.extend(d.include)
        include.multiline(True)
        t.add("include", include)
        packages = tomlkit.table()
        for name, version in sorted(d.packages.items()):
            packages.add(name, version)
        t.add("packages", packages)
        debian.add(arch, t)
    if lock.debian:
        doc.add("debian", debian)
    return tomlkit.dumps(doc), files


def is_written(lock: Lock, path: Path) -> bool:
    """Whether `path` and its lockfiles already hold exactly `lock`, as `write_lock` would write it."""
    text, files = render(lock, path)
    on_disk = sorted(p.name for p in (path.parent / PACKAGE_LOCKS).glob("*.json"))
    return (
        path.is_file()
        and path.read_text(encoding="utf-8") == text
        and on_disk == sorted(Path(rel).name for rel in files)
        and all((path.parent / rel).read_text(encoding="utf-8") == content for rel, content in files.items())
    )


def write_lock(lock: Lock, path: Path) -> None:
    """Write lock.toml and its npm lockfiles (each atomically; lockfiles first, lock.toml, which names their
    hashes, last); lockfiles of agents no longer in the lock are removed."""
    text, files = render(lock, path)
    for rel, content in files.items():
        atomic_write(path.parent / rel, content)
    atomic_write(path, text)
    stale = path.parent / PACKAGE_LOCKS
    if stale.is_dir():
        for old in stale.glob("*.json"):
            if f"{PACKAGE_LOCKS}/{old.name}" not in files:
                old.unlink()


# ------------------------------------------------------------------ what changed
def _diff_maps(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            out.append(f"{name} {a or '(none)'} → {b or '(removed)'}")
    return out


def components(lock: Lock) -> dict[str, tuple[str, dict[str, str], dict[str, str]]]:
    """component -> (its version, its parts' versions, its parts' hashes): what `diff` compares."""
    out: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}
    if lock.node is not None:
        out["node"] = (lock.node.version, {}, {a: b.integrity for a, b in lock.node.builds.items()})
    if lock.npm is not None:
        out["npm"] = (lock.npm.artifact.version, {}, {"npm": lock.npm.artifact.integrity})
    for name, agent in lock.agents.items():
        if agent.registry == "npm":
            hashes = {e.path: e.integrity for e in npm_tree(agent.package_lock)}
        else:
            hashes = {p.name: ",".join(sorted(p.wheels.values())) for p in agent.python}
        out[name] = (agent.version, agent.tree(), hashes)
    for arch, d in lock.debian.items():
        out[f"debian/{arch}"] = (d.suite, dict(d.packages), {})
    return out


def diff(old: Lock | None, new: Lock) -> list[str]:
    """What changed, one line per component (`claude 2.1.332 → 2.1.340`), then its parts indented."""
    before = components(old) if old is not None else {}
    after = components(new)
    lines: list[str] = []
    for name in sorted(set(before) | set(after), key=lambda n: (n.startswith("debian/"), n)):
        if name not in after:
            lines.append(f"{name} {before[name][0]} → (removed)")
            continue
        version, parts, hashes = after[name]
        if name not in before:
            lines.append(f"{name} (new) → {version}" + (f" ({len(parts)} packages)" if parts else ""))
            continue
        old_version, old_parts, old_hashes = before[name]
        part_lines = _diff_maps(old_parts, parts)
        same_version = {k for k in set(hashes) & set(old_hashes) if old_parts.get(k) == parts.get(k)}
        rehashed = sorted(k for k in same_version if hashes[k] != old_hashes[k])
        if old_version == version and not part_lines and not rehashed and hashes == old_hashes:
            continue
        lines.append(f"{name} {old_version} → {version}" if old_version != version else f"{name} {version}")
        lines += [f"  {line}" for line in part_lines]
        lines += [f"  {k}: same version, different hash (the registry changed what it serves)" for k in rehashed]
    return lines


def only_changed(old: Lock, new: Lock, names: Sequence[str]) -> bool:
    """Whether `new` differs from `old` in the named components only (what `lock --update NAME` promises)."""
    a, b = components(old), components(new)
    return all(
        a.get(k) == b.get(k)
        for k in set(a) | set(b)
        if k not in names and not (k.startswith("debian/") and "debian" in names)
    )
