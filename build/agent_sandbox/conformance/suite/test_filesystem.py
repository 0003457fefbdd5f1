"""Where the sandbox user can write: read-only root where the tier says so, the workspace per its mode,
/tmp (tmpfs, 1777) and the tier's other tmpfs directories; nothing else that persists on a read-only tier."""

from __future__ import annotations

import secrets

import pytest

from agent_sandbox import conformance, runtime
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import MARKER, Session
from agent_sandbox.model import WORKSPACE, Profile

pytestmark = [pytest.mark.area("filesystem"), pytest.mark.container]


def test_root_filesystem_is_read_only_where_the_tier_says(expected: Expectations, probe: Probe) -> None:
    """`filesystem.readonly` => / is mounted ro and creating files in system directories fails with EROFS;
    in every tier the non-root user cannot create files there."""
    writes = probe.try_writes(conformance.SYSTEM_DIRS)
    conformance.check_root_filesystem(expected, probe.mounts(), writes)


def test_user_writes_only_where_the_tier_allows(expected: Expectations, probe: Probe) -> None:
    mounts = probe.mounts()
    writable = probe.writable_places(mounts, extra=[expected.home, "/var/tmp", "/run", "/dev/shm", WORKSPACE])
    conformance.check_writable_places(expected, mounts, writable)


def test_tmp_is_a_usable_sticky_world_writable_directory(expected: Expectations, probe: Probe) -> None:
    conformance.check_tmp(expected, probe.host.file("/tmp").mode)
    assert probe.try_write("/tmp") == "written"


def test_workspace_is_the_host_directory_with_the_tiers_mode(
    expected: Expectations, probe: Probe, sandbox: runtime.Sandbox
) -> None:
    """The host directory is visible at /workspace; a rw workspace hands files back to the host, a ro one refuses."""
    host = probe.host
    assert host.file(f"{WORKSPACE}/{MARKER}").content_string.strip() == expected.tier
    result = host.run(f"echo from-the-sandbox > {WORKSPACE}/written-inside.txt")
    on_host = sandbox.workspace / "written-inside.txt"
    if expected.workspace_mode == "rw":
        assert result.rc == 0, result.stderr
        assert on_host.read_text() == "from-the-sandbox\n"
        assert on_host.stat().st_uid == expected.uid
    else:
        assert result.rc != 0 and "Read-only file system" in result.stderr, result.stderr
        assert not on_host.exists()


def test_nothing_written_outlives_the_sandbox(
    expected: Expectations, profile: Profile, session: Session, probe: Probe
) -> None:
    """A read-only tier's writable places (tmpfs, scratch volumes) start empty in every new sandbox, and removing
    a sandbox removes its scratch volumes from the host (the workspace is meant to persist and is excluded)."""
    if not expected.readonly_root:
        pytest.skip(f"tier {expected.tier} has a read-write root: it makes no claim that writes do not persist")
    places = probe.writable_places(probe.mounts(), extra=[expected.home, "/var/tmp", "/dev/shm"]) - {WORKSPACE}
    marker = f".agent-sandbox-outlives-{secrets.token_hex(6)}"
    for place in sorted(places):
        assert probe.run("touch %s", f"{place.rstrip('/')}/{marker}").rc == 0, place
    fresh = session.start(profile, label=f"{expected.tier}-fresh")
    try:
        fresh_probe = session.probe(fresh)
        leftovers = [p for p in sorted(places) if fresh_probe.run("test -e %s", f"{p.rstrip('/')}/{marker}").rc == 0]
        volumes = [m.get("Name") for m in fresh.inspect().get("Mounts") or [] if m.get("Type") == "volume"]
    finally:
        fresh.remove()
        for place in places:
            probe.run("rm -f %s", f"{place.rstrip('/')}/{marker}")
    assert not leftovers, f"a new {expected.tier} sandbox sees files written in the previous one in {leftovers}"
    assert len(volumes) == len(expected.scratch), f"scratch volumes {volumes}, the tier lists {expected.scratch}"
    kept = [v for v in volumes if session.engine.run(["volume", "inspect", v], check=False).ok]
    assert not kept, f"removing the sandbox left its scratch volumes on the host: {kept}"
