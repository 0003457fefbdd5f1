"""What is mounted: the workspace with the tier's mode, engine files, the tier's own mounts and nothing else from
the host; credentials and engine sockets are out of reach."""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import pytest

from agent_sandbox import conformance
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import Session
from agent_sandbox.model import Profile

pytestmark = [pytest.mark.area("mounts"), pytest.mark.container]


def test_workspace_is_mounted_with_the_tiers_mode(expected: Expectations, probe: Probe) -> None:
    conformance.check_workspace_mount(expected, probe.mounts())


def test_no_host_paths_but_the_workspace_and_the_tiers_mounts(expected: Expectations, probe: Probe) -> None:
    conformance.check_host_mounts(expected, probe.mounts())


def test_credentials_and_engine_sockets_are_out_of_reach(expected: Expectations, probe: Probe) -> None:
    """~/.ssh, ~/.aws, engine sockets and the tier's filesystem.deny paths: absent, unreadable or empty."""
    states = probe.path_states(expected.denied_paths)
    conformance.check_denied_paths(expected, states)


def test_tier_mounts_come_from_the_callers_home(expected: Expectations, probe: Probe) -> None:
    """container.mounts resolve ${localEnv:HOME} against the caller's HOME (a fake one here): the files the
    suite planted are what the sandbox sees, read-only where the tier says so."""
    host = probe.host
    if not expected.mounts:
        pytest.skip(
            f"tier {expected.tier} has no container.mounts (that nothing else comes from the host is "
            "test_no_host_paths_but_the_workspace_and_the_tiers_mounts)"
        )
    for mount in expected.mounts:
        target = host.file(mount.target)
        assert target.exists, f"{mount.target} is missing"
        if target.is_directory:
            assert "known_hosts" in target.listdir()
            planted = target.path + "/known_hosts"
        else:
            planted = target.path
        assert "agent-sandbox conformance" in host.file(planted).content_string
        if mount.readonly:
            result = host.run(f"touch {target.path}" + ("/x" if target.is_directory else ""))
            assert result.rc != 0 and "Read-only file system" in result.stderr, result.stderr


def test_a_tier_starts_when_a_mount_source_is_missing(
    expected: Expectations, profile: Profile, session: Session, tier: str
) -> None:
    """A tier mount whose host source is missing (trusted's ~/.ssh on a host without one) is left out with a warning,
    not a failed start; the mounts whose sources exist are still there."""
    if not expected.mounts:
        pytest.skip(f"tier {expected.tier} has no container.mounts")
    home = session.base / f"home-without-sources-{tier}"
    home.mkdir()
    env = {**session.host_env(), "HOME": str(home)}
    kept, *missing = profile.container.mounts
    kept_source = Path(kept.source.replace("${localEnv:HOME}", str(session.fake_home)))
    copy = Path(kept.source.replace("${localEnv:HOME}", str(home)))
    if kept_source.is_dir():
        shutil.copytree(kept_source, copy)
    else:
        shutil.copy(kept_source, copy)
    box = session.start(profile, label=f"{tier}-missing-sources", host_env=env)
    try:
        assert box.running()
        for mount in missing:
            assert any(mount.target in w and "does not exist" in w for w in box.warnings), box.warnings
        probe = session.probe(box)
        mounted = {m.mount_point for m in probe.mounts()}
        assert kept.target in mounted
        assert not {m.target for m in missing} & mounted
        # nothing else from the host: the tier's claims, less the mounts left out
        left = attrs.evolve(expected, mounts=tuple(m for m in expected.mounts if m.target == kept.target))
        conformance.check_host_mounts(left, probe.mounts())
    finally:
        box.remove()
