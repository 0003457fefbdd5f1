"""Memory, CPU and process limits as the tier sets them (cgroup v1 or v2), and proof that they bite."""

from __future__ import annotations

import pytest

from agent_sandbox import conformance, runtime
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import Session
from agent_sandbox.model import Profile

pytestmark = [pytest.mark.area("limits"), pytest.mark.container]

# The hog runs in a separate short-lived container with the tier's flags, except --memory/--memory-swap lowered
# to this: allocating the tiers' real 4-8 GiB would take long and crowd a shared CI machine. The tier's real
# value is asserted by test_cgroup_limits_are_the_tiers; this test proves the engine enforces the flag.
HOG_LIMIT = "256m"
HOG_ALLOCATES = 512 << 20


def test_cgroup_limits_are_the_tiers(expected: Expectations, probe: Probe) -> None:
    conformance.check_limits(expected, probe.cgroup_limits())


def test_fork_bomb_is_contained(expected: Expectations, probe: Probe, python3: None) -> None:
    """Forks until fork fails: it must fail with EAGAIN before the tier's pids limit, and the sandbox survives."""
    if expected.pids is None:
        pytest.skip(f"tier {expected.tier} sets no pids limit: a fork bomb would only meet the engine's default")
    forked, error = probe.fork_bomb(expected.pids)
    conformance.check_fork_bomb(expected, forked, error, probe.alive())


def test_memory_hog_is_oom_killed(expected: Expectations, profile: Profile, session: Session, python3: None) -> None:
    """A process allocating past the memory limit is OOM-killed; the container (its shell) survives."""
    if expected.memory_bytes is None:
        pytest.skip(f"tier {expected.tier} sets no memory limit")

    def lower_memory(flags: list[str]) -> list[str]:  # see HOG_LIMIT: the only deviation from the tier's flags
        flags = runtime.replace_flag(flags, "--memory=", f"--memory={HOG_LIMIT}")
        return runtime.replace_flag(flags, "--memory-swap=", f"--memory-swap={HOG_LIMIT}")

    code, _, output = runtime.run_once(
        session.image,
        profile,
        ["/bin/sh", "-c", conformance.MEMORY_HOG, "hog", str(HOG_ALLOCATES)],
        engine=session.engine,
        workspace=session.new_workspace(f"{expected.tier}-hog"),
        host_env=session.host_env(),
        uid=session.uid,
        gid=session.gid,
        adjust=lower_memory,
        timeout=60,
    )
    assert code == 0, f"the hog container itself died ({code}): {output[-300:]}"
    conformance.check_oom(expected, *conformance.parse_hog_output(output))
