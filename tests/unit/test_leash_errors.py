"""Profiles Leash cannot enforce as written are refused with the file:line of the rule at fault, never dropped.

Every case is a user profile that `inherits: agent-sandbox` (strict's rules): read everywhere, write /workspace and
caches, credentials denied, exec "/**" minus sudo & co, a proxied network allowlist.
"""

from __future__ import annotations

from pathlib import Path

import cedar_model as cm
import pytest

from agent_sandbox import profiles
from agent_sandbox.compilers import leash
from agent_sandbox.errors import NotEnforceable


def write_profile(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ninherits: agent-sandbox\n" + body, encoding="utf-8")
    return path


def refusal(tmp_path: Path, body: str) -> NotEnforceable:
    path = write_profile(tmp_path, body)
    with pytest.raises(NotEnforceable) as info:
        leash.compile_leash(profiles.load_profile(path))
    return info.value


# The base uses 156 of Leash's 256 file rules (3 per read+write path) and 43 of its 64 exec rules (3 per name).
MANY_DIRS = "".join(f"    - /srv/d{i}/**\n" for i in range(90))  # the 34th does not fit
MANY_PROGRAMS = "".join(f"    - tool{i}\n" for i in range(8))  # the 8th does not fit
LONG = "/workspace/" + "x" * 60

# (case, profile body after `inherits`, where the error points, what the message must also name)
CASES = [
    (
        "too many file rules",
        "filesystem:\n  allow+:\n" + MANY_DIRS,
        "mine.yaml:38: filesystem.allow+[33]",
        ("at most 256",),
    ),
    (
        "too many exec rules",
        "exec:\n  deny+:\n" + MANY_PROGRAMS,
        "mine.yaml:12: exec.deny+[7]",
        ("at most 64",),
    ),
    (
        "file rule path over 64 bytes",
        f"filesystem:\n  deny+:\n    - {LONG}/**\n",
        "mine.yaml:5: filesystem.deny+[0]",
        ("longer than 64 bytes",),
    ),
    (
        "exec rule path over 64 bytes",
        f"exec:\n  deny+:\n    - /opt/{'y' * 70}\n",
        "mine.yaml:5: exec.deny+[0]",
        ("longer than 64 bytes",),
    ),
    (
        "a write exception inside a denied tree",
        "filesystem:\n  deny+:\n    - /opt/**\n  allow+:\n    - /opt/tool/cache/**\n",
        "mine.yaml:7: filesystem.allow+[0]",
        ('filesystem.deny "/opt/**" (mine.yaml:5)', "Cedar lets the forbid win"),
    ),
    (
        "a write exception inside a read-only tree inside a writable one",
        "filesystem:\n  allow+:\n    - /workspace/.git/hooks/local/**\n",
        "mine.yaml:5: filesystem.allow+[0]",
        ('filesystem.read "/workspace/.git/hooks/**" (agent-sandbox.yaml:42)',),
    ),
    (
        "allow and deny on the same path",
        "filesystem:\n  allow+:\n    - /srv/**\n  deny+:\n    - /srv/**\n",
        "mine.yaml:7: filesystem.deny+[0]",
        ('filesystem.allow "/srv/**" (mine.yaml:5)', "no defined order"),
    ),
    (
        "read and write on the same path",
        "filesystem:\n  read+:\n    - /workspace/**\n",
        "mine.yaml:5: filesystem.read+[0]",
        ('filesystem.allow "/workspace/**" (agent-sandbox.yaml:46)',),
    ),
    (
        "an exec exception under a denied name: a byte prefix",
        "exec:\n  allow+:\n    - /usr/bin/sudo-rs\n",
        "mine.yaml:5: exec.allow+[0]",
        ('exec.deny "su" (agent-sandbox.yaml:85)',),
    ),
    (
        "an exec allow and deny on the same binary",
        "exec:\n  allow+:\n    - /usr/bin/docker\n",
        "mine.yaml:5: exec.allow+[0]",
        ('exec.deny "docker" (agent-sandbox.yaml:88)', "no defined order"),
    ),
    (
        "a denied host inside an allowed wildcard",
        "network:\n  allow+:\n    - '*.example.com'\n  deny+:\n    - evil.example.com\n",
        "mine.yaml:7: network.deny+[0]",
        ('network.allow "*.example.com" (mine.yaml:5)', "overlap"),
    ),
    (
        "a wildcard deny under allow-all",
        "network:\n  allow: ['*']\n  deny:\n    - '*.evil.com'\n",
        "mine.yaml:6: network.deny[0]",
        ("cannot enforce a wildcard deny",),
    ),
    (
        "allow-all with the inherited deny-all",
        "network:\n  allow: ['*']\n",
        "agent-sandbox.yaml:34: network.deny[0]",
        ("contradict",),
    ),
    (
        "a host name Leash truncates",
        "network:\n  allow+:\n    - " + "a" * 63 + "." + "b" * 63 + ".com\n",
        "mine.yaml:5: network.allow+[0]",
        ("over 127 bytes",),
    ),
    (
        "a path Leash's resource parser would split",
        "filesystem:\n  deny+:\n    - '/srv/a::b/**'\n",
        "mine.yaml:5: filesystem.deny+[0]",
        ("'::'",),
    ),
]


@pytest.mark.parametrize("body, where, mentions", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_the_rule_at_fault(tmp_path, body, where, mentions):
    error = refusal(tmp_path, body)
    text = str(error)
    assert error.where is not None and str(error.where).endswith(where), text
    for mention in mentions:
        assert mention in text, text


def test_a_redundant_deny_above_an_exception_is_dropped_not_refused(tmp_path):
    # Without "read /**" nothing outside the rules is readable, so deny /srv/** overrides no permit: Leash and
    # Cedar agree without it, and the exception inside it can stand.
    path = write_profile(tmp_path, "filesystem:\n  read: []\n  allow: ['/srv/app/**']\n  deny: ['/srv/**']\n")
    policy = cm.CedarPolicy(leash.compile_leash(profiles.load_profile(path)))
    assert policy.can(cm.WRITE, "/srv/app/x") and not policy.can(cm.READ, "/srv/other")


def test_bootstrap_path_denied_by_the_profile_is_left_out_and_said_so(tmp_path):
    path = write_profile(tmp_path, "filesystem:\n  deny+: ['/leash/**']\n")
    text = leash.compile_leash(profiles.load_profile(path))
    assert "Leash bootstrap: /leash/ NOT added" in text and 'filesystem.deny "/leash/**" (mine.yaml:4)' in text
    assert not cm.CedarPolicy(text).can(cm.WRITE, "/leash/bootstrap.ready")


def test_a_deny_on_the_egress_proxy_drops_its_permit_and_says_so(tmp_path):
    path = write_profile(tmp_path, "network:\n  deny+: ['agent-sandbox-proxy']\n")
    text = leash.compile_leash(profiles.load_profile(path))
    assert "The egress proxy agent-sandbox-proxy:3128 is NOT permitted" in text
    assert not cm.CedarPolicy(text).can_connect("agent-sandbox-proxy", 3128)
