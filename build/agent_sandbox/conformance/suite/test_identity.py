"""Who the agent runs as: the tier's non-root user, no way to root through sudo or su (nor any setuid program),
and no user namespace where the tier refuses them."""

from __future__ import annotations

import pytest

from agent_sandbox import conformance
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import Session
from agent_sandbox.labels import LABEL_BACKEND

pytestmark = [pytest.mark.area("identity"), pytest.mark.container]


def test_commands_run_as_the_tiers_non_root_user(expected: Expectations, probe: Probe) -> None:
    user = probe.host.user()
    conformance.check_identity(expected, uid=user.uid, user=user.name, init_uids=probe.status("1")["Uid"])


def test_sudo_and_su_do_not_give_root(expected: Expectations, probe: Probe) -> None:
    """With no-new-privileges a setuid sudo/su cannot raise privileges; absent binaries pass trivially."""
    if not expected.escalation_blocked:
        pytest.skip(f"tier {expected.tier} sets no_new_privileges: false; it makes no claim about setuid escalation")
    conformance.check_escalation(expected, probe.escalation_attempts())


def test_user_namespaces_are_refused_where_the_tier_says(expected: Expectations, probe: Probe) -> None:
    """container.user_namespaces: false (paranoid) => `unshare -Ur true` and clone(CLONE_NEWUSER) fail (the tier's
    seccomp profile). Elsewhere the engine's default profile decides, and the tier claims nothing."""
    attempts = probe.user_namespace_attempts()
    if expected.user_namespaces:
        seen = "; ".join(f"`{cmd}` exit {code}" for cmd, (code, _) in attempts.items())
        pytest.skip(
            f"tier {expected.tier} does not refuse user namespaces: the engine's default seccomp profile "
            f"decides (here: {seen})"
        )
    if all(code == 127 for code, _ in attempts.values()):
        pytest.skip("the image has neither unshare nor python3 to try with")
    conformance.check_user_namespaces(expected, attempts)


def test_no_setuid_or_setgid_programs_in_the_image(expected: Expectations, probe: Probe, session: Session) -> None:
    """Images built by agent-sandbox carry no setuid/setgid file (the Nix image has none; the Debian backend strips
    them): without no-new-privileges (trusted) they would be escalation paths."""
    labels = session.inspect_image().get("Config", {}).get("Labels") or {}
    if LABEL_BACKEND not in labels:
        pytest.skip(f"{session.image} has no {LABEL_BACKEND} label: not built by agent-sandbox (a test image?)")
    conformance.check_no_setid_files(expected, probe.setid_files())
