"""Who the agent runs as: the tier's non-root user, and no way to root through sudo or su."""

from __future__ import annotations

import pytest
from agent_sandbox import conformance


def test_commands_run_as_the_tiers_non_root_user(expected, host, probe):
    user = host.user()
    conformance.check_identity(expected, uid=user.uid, user=user.name, init_uids=probe.status("1")["Uid"])


def test_sudo_and_su_do_not_give_root(expected, probe):
    """With no-new-privileges a setuid sudo/su cannot raise privileges; absent binaries pass trivially."""
    if not expected.escalation_blocked:
        pytest.skip(f"tier {expected.tier} sets no_new_privileges: false; it makes no claim about setuid escalation")
    conformance.check_escalation(expected, probe.escalation_attempts())
