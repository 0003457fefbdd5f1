"""A Debian-built image holds exactly the versions its lock (images/<image>/lock.toml) names: each agent, Node and
npm answer `--version` with the locked version, and the image's `dev.agent-sandbox.agent-versions` label says
the same. (The Nix image's versions are its pinned nixpkgs': these checks skip it.)"""

from __future__ import annotations

import pytest

from agent_sandbox import conformance
from agent_sandbox import lock as lk
from agent_sandbox import sbom as sb
from agent_sandbox.backends.debian import recorded_versions
from agent_sandbox.conformance.session import Session
from agent_sandbox.errors import SandboxError
from agent_sandbox.labels import LABEL_AGENT_VERSIONS, LABEL_AGENTS, LABEL_BACKEND

# what prints the version, and how it is printed (node says v22.1.0)
COMMANDS = {
    "claude": "claude --version",
    "codex": "codex --version",
    "gemini": "gemini --version",
    "aider": "aider --version",
    "node": "node --version",
    "npm": "npm --version",
}

pytestmark = [pytest.mark.area("versions"), pytest.mark.container]


def _labels(session: Session) -> dict[str, str]:
    info = session.inspect_image()
    return (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}


def locked(session: Session) -> tuple[lk.Lock, list[str]]:
    labels = _labels(session)
    if labels.get(LABEL_BACKEND) != "debian":
        pytest.skip(f"{session.image} was not built by the Debian backend (its versions are not a lock's)")
    if session.description is None:
        pytest.skip(f"no images/<name>/image.toml describes {session.image} (pass --image-description)")
    lock = lk.read_lock(lk.lock_path(session.description.path), session.description.name)
    assert lock is not None, f"{session.description.path.parent} has no lock.toml, but the Debian build writes one"
    return lock, conformance.split_label_list(labels.get(LABEL_AGENTS)) or []


def arch_of(session: Session) -> str:
    """The image's architecture as Debian and the lock name it (podman may say x86_64 where docker says amd64)."""
    arch = str(session.inspect_image().get("Architecture", "amd64"))
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)


def test_the_sbom_lists_the_locks_versions(session: Session, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Syft's SPDX SBOM of the image lists each agent, Node, npm and every PyPI package at the lock's version,
    only locked npm packages under /opt/<agent>, and every Debian package at the lock's version."""
    lock, held = locked(session)
    try:
        sb.find_syft()
    except SandboxError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("sbom") / "image.spdx.json"
    doc = sb.write_sbom(session.engine, session.image, out)
    assert sb.compare_with_lock(doc, lock, lock.versions(held, arch_of(session)), arch_of(session)) == []
    assert len(sb.packages(doc)) > 100


def test_the_label_carries_the_locks_versions(session: Session) -> None:
    lock, held = locked(session)
    label = dict(
        item.partition("=")[::2] for item in _labels(session).get(LABEL_AGENT_VERSIONS, "").split(",") if "=" in item
    )
    assert label == lock.versions(held, arch_of(session))
    assert recorded_versions(session.engine, session.image) == label


@pytest.mark.parametrize("component", list(COMMANDS))
def test_each_agent_answers_with_its_locked_version(component: str, session: Session) -> None:
    lock, held = locked(session)
    versions = lock.versions(held, arch_of(session))
    if component not in versions:
        pytest.skip(f"{session.image} holds no {component} (its labels say)")
    result = session.engine.run(
        [
            "run",
            "--rm",
            "--network=none",
            "--user",
            f"{session.uid}:{session.gid}",
            "--entrypoint",
            "sh",
            session.image,
            "-c",
            f"HOME=$(mktemp -d) {COMMANDS[component]}",
        ],
        check=False,
        timeout=120,
    )
    answer = (result.out + result.err).strip()
    assert result.ok, f"`{COMMANDS[component]}` exited {result.code}: {answer[-400:]}"
    words = answer.replace("v", " ").split()
    assert versions[component] in words, f"{component} says {answer[-200:]!r}, the lock says {versions[component]}"
