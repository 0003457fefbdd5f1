"""The Debian build installs only what the image's lock names: an artifact whose bytes are not the lock's fails
the build with one line naming the component, and nothing is tagged.

The artifacts come from a stand-in for the npm registry and PyPI on the loopback interface (registry_standin.py):
a mirror of ours that serves one artifact tampered with, self-consistently (its metadata vouches for the new
bytes), so that only the lock's hashes can catch it. Each case checks the stand-in really served the tampered
file: a build failing for another reason does not pass.

Each case builds in a throwaway cache repository holding only the base layer, tagged from the usual cache (`make
image` builds it; the same key for any choice of agents), else built first (about two minutes).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from agent_sandbox import lock as lk
from agent_sandbox.backends import debian
from agent_sandbox.engine import detect_engine
from agent_sandbox.errors import CommandFailed, SandboxError
from agent_sandbox.images import load_image

from .registry_standin import RegistryStandIn

IMAGE = "agent-sandbox-devcontainer"
TAG = "localhost/agent-sandbox-tamper-test:latest"


def the_lock() -> lk.Lock:
    image = load_image(IMAGE)
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    assert lock is not None, "the repository's image has a lock"
    return lock


def tampered_cases() -> list[object]:
    lock = the_lock()
    assert lock.node is not None
    node = lock.node.builds["amd64"]
    claude = lock.agents["claude"]
    aider = lock.agents["aider"]
    aider_wheel = next(f for p in aider.python if p.name == aider.package for f in p.wheels)
    return [
        pytest.param(
            "claude",
            f"{node.package}-{node.version}.tgz",
            f"integrity check failed: {node.package}@{node.version}: the download's sha512 is",
            id="node",
        ),
        pytest.param(
            "claude",
            f"claude-code-{claude.version}.tgz",
            f"integrity check failed: npm package {claude.package}@{claude.version} (agent claude): "
            "the download is sha512-",
            id="claude-npm-ci",
        ),
        pytest.param(
            "aider",
            aider_wheel,
            f"integrity check failed: PyPI package {aider.package}=={aider.version} (agent aider): "
            "the download's sha256 is",
            id="aider-wheel",
        ),
    ]


@pytest.fixture
def engine_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """podman, with a throwaway cache repository holding only the base layer (tagged from the usual cache when it
    is there): no agents layer of an earlier build can turn a case into a cache hit."""
    try:
        engine = detect_engine()
    except SandboxError as exc:
        pytest.skip(str(exc))
    if engine.name != "podman":  # the checks are the agents script's, whatever engine runs it: once is enough
        pytest.skip("the tampered-artifact builds run on podman (docker would first build its own base layer)")
    base = debian.plan_build(IMAGE, agents=("claude",)).cache_ref("base")
    monkeypatch.setenv("AGENT_SANDBOX_CACHE_REPO", f"localhost/agent-sandbox-tamper-{secrets.token_hex(4)}")
    throwaway = debian.plan_build(IMAGE, agents=("claude",)).cache_ref("base")
    if engine.image_exists(base):
        engine.tag(base, throwaway)
    try:
        yield engine.name
    finally:
        engine.remove_image(TAG)
        engine.remove_image(throwaway)  # the tag only, when the usual cache has the layer too


@pytest.mark.parametrize(("agent", "tampered", "message"), tampered_cases())
def test_a_tampered_artifact_fails_the_build_naming_it_and_nothing_is_tagged(
    agent: str, tampered: str, message: str, engine_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = detect_engine(engine_name)
    with RegistryStandIn(tampered=tampered) as standin:
        monkeypatch.setenv("AGENT_SANDBOX_NPM_REGISTRY", standin.npm_url)
        monkeypatch.setenv("AGENT_SANDBOX_PYPI_INDEX", standin.pypi_url)
        plan = debian.plan_build(IMAGE, agents=(agent,))
        assert not engine.image_exists(plan.cache_ref("agents")), "a cached agents layer would skip the downloads"
        with pytest.raises(CommandFailed) as failed:
            debian.build_debian(IMAGE, agents=(agent,), engine=engine_name, tag=TAG)
        assert standin.was_served(tampered), f"the build never asked the stand-in for {tampered}: {standin.served}"
    text = str(failed.value)
    assert text.startswith(message), text
    assert "\n" not in text and text.endswith("nothing was tagged")
    assert not engine.image_exists(plan.cache_ref("agents"))
    assert not engine.image_exists(plan.cache_ref("policies"))
    assert not engine.image_exists(TAG)


def test_the_stand_in_serves_the_untampered_bytes_faithfully() -> None:
    """The control: without a tampered file, what the stand-in serves hashes to what the lock says (so the cases
    above fail because of the tampering, not because the stand-in mangles everything)."""
    import urllib.request

    lock = the_lock()
    assert lock.npm is not None
    npm = lock.npm.artifact
    with RegistryStandIn() as standin:
        with urllib.request.urlopen(standin.npm_url + npm.tarball_path, timeout=120) as response:
            assert lk.sri_of(response.read()) == npm.integrity
