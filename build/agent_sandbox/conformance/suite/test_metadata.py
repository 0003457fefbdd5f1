"""The image's own description of itself (devcontainer.metadata, user, workdir, env) and what the running
sandbox reports: both must match the compiled tier."""

from __future__ import annotations

from typing import Any

import pytest

from agent_sandbox import conformance, profiles, runtime
from agent_sandbox.compilers.devcontainer import metadata_label
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import Session
from agent_sandbox.labels import LABEL_METADATA as METADATA_LABEL
from agent_sandbox.labels import LABEL_TIER as TIER_LABEL
from agent_sandbox.model import WORKSPACE

pytestmark = [pytest.mark.area("metadata"), pytest.mark.container]


def _config(session: Session) -> dict[str, Any]:
    config: dict[str, Any] = session.inspect_image().get("Config") or {}
    return config


def _image_tier(session: Session) -> str | None:
    labels = _config(session).get("Labels") or {}
    if TIER_LABEL in labels:
        return str(labels[TIER_LABEL])
    return session.description.tier if session.description else None


def test_metadata_label_is_the_compiled_tier(session: Session) -> None:
    labels = _config(session).get("Labels") or {}
    if METADATA_LABEL not in labels:
        pytest.skip(f"{session.image} has no {METADATA_LABEL} label: not built by agent-sandbox (a test image?)")
    tier = _image_tier(session)
    assert tier, f"neither a {TIER_LABEL} label nor an image description names the image's tier"
    profile = profiles.load_profile(tier)
    want = metadata_label(profile, uid=session.uid, gid=session.gid)
    conformance.check_metadata_label(conformance.expect(profile), labels[METADATA_LABEL], want)


def test_image_user_and_workdir(session: Session) -> None:
    """root, for Leash's bootstrap (test_leash_target.py shows what enters afterwards is the user); a login shell as
    the default command; /workspace."""
    config = _config(session)
    if METADATA_LABEL not in (config.get("Labels") or {}):
        pytest.skip(f"{session.image} was not built by agent-sandbox")
    assert config.get("User", "").split(":")[0] in ("0", "root"), f"image User is {config.get('User')!r}"
    assert (config.get("Cmd") or [])[-1:] == ["-l"], f"image Cmd is {config.get('Cmd')!r}: not a login shell"
    assert config.get("WorkingDir") == WORKSPACE, f"image WorkingDir is {config.get('WorkingDir')!r}"


def test_sandbox_environment_inside(expected: Expectations, probe: Probe) -> None:
    """Inside: the tier's variables, the user's HOME, no API key the caller did not pass, and cwd /workspace."""
    conformance.check_env(expected, probe.environment())
    assert probe.run("pwd").stdout.strip() == WORKSPACE


def test_sandbox_environment_and_label_from_inspect(expected: Expectations, sandbox: runtime.Sandbox) -> None:
    config = sandbox.inspect().get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    for name, value in expected.env:
        assert env.get(name) == value, f"inspect: ${name} = {env.get(name)!r}, the tier sets {value!r}"
    assert (config.get("Labels") or {}).get(TIER_LABEL) == expected.tier
    assert config.get("User") == f"{expected.uid}:{expected.gid}"
