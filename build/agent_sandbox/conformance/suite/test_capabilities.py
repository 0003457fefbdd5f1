"""Capabilities and no-new-privileges, read from /proc/1/status (the container's init, started with the tier's
flags) and /proc/self/status (a process exec'd into the running sandbox, as an agent's commands are)."""

from __future__ import annotations

import pytest

from agent_sandbox import conformance
from agent_sandbox.conformance import Expectations, Probe

pytestmark = [pytest.mark.area("capabilities"), pytest.mark.container]


def test_capability_sets_hold_only_what_the_tier_grants(expected: Expectations, probe: Probe) -> None:
    """Drops ALL => CapEff, CapPrm, CapBnd and CapAmb are exactly cap_add (zero when it adds none);
    otherwise the engine's defaults apply, but never a privileged capability the tier does not add."""
    conformance.check_capabilities(expected, probe.statuses())


def test_no_new_privileges_is_as_the_tier_says(expected: Expectations, probe: Probe) -> None:
    """NoNewPrivs is 1 where container.no_new_privileges is set (setuid binaries cannot raise privileges)."""
    conformance.check_no_new_privileges(expected, probe.statuses())
