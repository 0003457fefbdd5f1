"""The lock against the real registries (npm and PyPI are reachable from our machines and CI): what they serve
is what the repository's lock says, and a lock that says otherwise is caught, naming the component."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_sandbox import lock as lk
from agent_sandbox import lockresolve as lr
from agent_sandbox.images import Catalog, Image

SIX_WHEEL = "six-1.17.0-py2.py3-none-any.whl"


@pytest.fixture(scope="module")
def registries() -> lr.Registries:
    return lr.Registries()


@pytest.fixture(scope="module")
def locked(image: Image) -> lk.Lock:
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None
    return lock


def test_npm_serves_the_locked_claude_node_and_npm(registries: lr.Registries, locked: lk.Lock) -> None:
    claude = locked.agents["claude"]
    assert registries.npm_artifact(claude.package, claude.version).integrity == claude.integrity
    assert locked.node is not None and locked.npm is not None
    node = locked.node.builds["amd64"]
    assert registries.npm_artifact(node.package, node.version).integrity == node.integrity
    assert registries.npm_artifact("npm", locked.npm.artifact.version) == locked.npm.artifact


def test_npm_resolves_claudes_tree_as_locked(registries: lr.Registries, locked: lk.Lock) -> None:
    """npm install --package-lock-only of the locked version gives the same packages, versions and integrities
    (the host's npm may format its lockfile differently: the tree is compared, not the text)."""
    claude = locked.agents["claude"]
    text = registries.npm_tree("claude", claude.package, claude.version)
    assert json.loads(text)["lockfileVersion"] == 3
    assert lk.npm_tree(text) == lk.npm_tree(claude.package_lock)
    assert any("linux-x64" in e.path for e in lk.npm_tree(text))  # every platform's optional binary is locked


def test_pypi_resolves_a_small_tree_with_hashes(registries: lr.Registries) -> None:
    version, packages = registries.pypi_tree("six", "1.17.0", "3.11")
    assert version == "1.17.0"
    assert [(p.name, p.version, list(p.wheels)) for p in packages] == [("six", "1.17.0", [SIX_WHEEL])]
    assert registries.pypi_files("six", "1.17.0")[SIX_WHEEL] == packages[0].wheels[SIX_WHEEL]


def test_check_passes_on_the_locked_claude_and_names_a_wrong_hash(
    registries: lr.Registries, locked: lk.Lock, image: Image, catalog: Catalog
) -> None:
    claude = locked.agents["claude"]
    subset = lk.Lock(locked.image, agents={"claude": claude})
    findings = lr.check_lock(subset, image, catalog, registries=registries, arch="amd64", debian=False)
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    wrong = lk.sri_of(b"not what npm serves")
    tampered = claude.package_lock.replace(claude.integrity, wrong)
    bad = lk.AgentLock("claude", "npm", claude.package, claude.version, wrong, tampered)
    findings = lr.check_lock(
        lk.Lock(locked.image, agents={"claude": bad}), image, catalog, registries=registries, arch="amd64", debian=False
    )
    failed = [f for f in findings if not f.ok]
    assert len(failed) == 1 and failed[0].component == "claude"
    assert failed[0].message.startswith(f"{claude.package}@{claude.version}: the registry serves {claude.integrity}")


def test_check_names_a_wheel_pypi_does_not_serve(registries: lr.Registries, image: Image, catalog: Catalog) -> None:
    six = lk.PythonPackage("six", "1.17.0", {SIX_WHEEL: "00" * 32})
    agent = lk.AgentLock("aider", "pypi", "six", "1.17.0", python=(six,))
    findings = lr.check_lock(
        lk.Lock("x", agents={"aider": agent}), image, catalog, registries=registries, arch="amd64", debian=False
    )
    assert [(f.component, f.ok) for f in findings] == [("aider", False)]
    assert SIX_WHEEL in findings[0].message


def test_the_lock_file_is_what_the_registries_resolve_for_gemini(
    registries: lr.Registries, locked: lk.Lock, tmp_path: Path
) -> None:
    gemini = locked.agents["gemini"]
    assert lk.npm_tree(registries.npm_tree("gemini", gemini.package, gemini.version)) == lk.npm_tree(
        gemini.package_lock
    )
