"""What each shipped tier's Leash policy decides, read by the real Cedar engine and by a model of Leash.

One table: a request, then the expected decision for paranoid, strict, standard and trusted. Rows marked GAP are
Leash behaviour the policy cannot avoid (byte-prefix paths, names outside exec.search_path, the proxy's suffix
wildcards); they are pinned here so that a change in them is noticed. The entity model is in cedar_model.py.
"""

from __future__ import annotations

from functools import cache

import cedar_model as cm
import cedarpy
import pytest

from agent_sandbox import profiles
from agent_sandbox.compilers import leash

TIERS = ("paranoid", "strict", "standard", "trusted")
H = "/home/vscode"

# (what, target, paranoid, strict, standard, trusted)
TABLE = [
    # credentials
    ("read", f"{H}/.ssh/id_rsa", 0, 0, 0, 1),
    ("write", f"{H}/.ssh/authorized_keys", 0, 0, 0, 1),
    ("read", f"{H}/.aws/credentials", 0, 0, 0, 1),
    ("read", f"{H}/.config/gcloud/credentials.db", 0, 0, 0, 1),
    ("read", "/etc/shadow", 0, 0, 0, 1),
    ("read", "/etc/shadow-", 0, 0, 0, 1),  # GAP: File::"/etc/shadow" is a byte prefix (safe direction)
    ("read", "/etc/sudoers.d/90-vscode", 0, 0, 0, 1),
    ("write", "/run/docker.sock", 0, 0, 0, 1),
    # the workspace and its persistence points
    ("read", "/workspace/src/app.ts", 1, 1, 1, 1),
    ("write", "/workspace/src/app.ts", 0, 1, 1, 1),
    ("read", "/workspace/.git/hooks/pre-commit", 1, 1, 1, 1),
    ("write", "/workspace/.git/hooks/pre-commit", 0, 0, 0, 1),
    ("write", "/workspace/.git/config", 0, 1, 1, 1),
    ("write", "/workspace/.leash/audit.log", 0, 0, 0, 1),
    # the system
    ("read", "/etc/passwd", 1, 1, 1, 1),
    ("write", "/etc/passwd", 0, 0, 0, 1),
    ("read", "/usr/bin/git", 1, 1, 1, 1),
    ("write", "/usr/bin/x", 0, 0, 0, 1),
    ("read", "/proc/self/status", 1, 1, 1, 1),
    ("write", "/dev/null", 1, 1, 1, 1),
    ("write", "/tmp/x", 1, 1, 1, 1),
    ("write", "/var/tmp/x", 0, 1, 1, 1),  # paranoid replaces filesystem.allow: /tmp, /dev, ~ only
    # home: caches and agent state are writable; shell start-up files are not (paranoid's home is a tmpfs)
    ("write", f"{H}/.bashrc", 1, 0, 0, 1),
    ("write", f"{H}/.cache/pip/x", 1, 1, 1, 1),
    ("write", f"{H}/.claude.json", 1, 1, 1, 1),
    ("write", f"{H}/.claude.json.lock", 1, 1, 1, 1),  # GAP: File::"~/.claude.json" is a byte prefix
    ("read", f"{H}/.config/git/config", 1, 1, 1, 1),
    # Leash's own bootstrap (cmd/leash-entry); Unix permissions still stop a non-root agent there
    ("write", "/leash/bootstrap.ready", 1, 1, 1, 1),
    ("write", "/etc/ssl/certs/ca-certificates.crt", 1, 1, 1, 1),
    ("write", "/usr/local/share/ca-certificates/leash-ca.crt", 1, 1, 1, 1),
    # exec
    ("exec", "/usr/bin/sudo", 0, 0, 0, 1),
    ("exec", "/usr/sbin/chroot", 0, 0, 0, 1),
    ("exec", "/usr/local/bin/docker", 0, 0, 0, 1),
    ("exec", "/usr/bin/git", 1, 1, 1, 1),
    ("exec", "/usr/bin/rm", 1, 1, 1, 1),
    ("exec", "/usr/bin/curl", 1, 1, 1, 1),
    ("exec", "/usr/bin/sum", 0, 0, 0, 1),  # GAP: File::"/usr/bin/su" is a byte prefix (safe direction)
    ("exec", "/nix/store/abc-sudo/bin/sudo", 1, 1, 1, 1),  # GAP: names match only in exec.search_path
    ("exec", "/usr/sbin/update-ca-certificates", 1, 1, 1, 1),
    # network
    ("connect", "api.anthropic.com:443", 0, 1, 1, 1),
    ("connect", "api.anthropic.com:80", 0, 0, 1, 1),
    ("connect", "pastebin.com:443", 0, 0, 1, 1),
    ("connect", "github.com:22", 0, 1, 1, 1),
    ("connect", "api.cursor.com:443", 0, 1, 1, 1),
    ("connect", "cursor.com:443", 0, 0, 1, 1),
    ("connect", "badcursor.com:443", 0, 1, 1, 1),  # GAP: the Leash proxy's wildcard is a plain suffix match
    ("connect", "169.254.169.254:80", 0, 0, 0, 1),
    ("connect", "agent-sandbox-proxy:3128", 0, 1, 1, 1),  # the egress proxy itself
]

# Rows where Leash's decision is not the profile's intent: documented gaps, and what the compiler adds.
GAPS = {
    ("read", "/etc/shadow-"),
    ("write", f"{H}/.claude.json.lock"),
    ("exec", "/usr/bin/sum"),
    ("exec", "/nix/store/abc-sudo/bin/sudo"),
    ("connect", "badcursor.com:443"),
}
ADDED = {  # Leash's bootstrap and the egress proxy
    ("write", "/leash/bootstrap.ready"),
    ("write", "/etc/ssl/certs/ca-certificates.crt"),
    ("write", "/usr/local/share/ca-certificates/leash-ca.crt"),
    ("connect", "agent-sandbox-proxy:3128"),
}


@cache
def compiled(tier: str) -> tuple[cm.CedarPolicy, tuple[cm.LeashRule, ...]]:
    text = leash.compile_leash(profiles.load_profile(tier))
    return cm.CedarPolicy(text), tuple(cm.leash_rules(text))


def cedar_decision(tier: str, what: str, target: str) -> bool:
    policy, _ = compiled(tier)
    if what == "connect":
        host, port = target.rsplit(":", 1)
        return policy.can_connect(host, int(port))
    return policy.can({"read": cm.READ, "write": cm.WRITE, "exec": cm.EXEC}[what], target)


def leash_decision(tier: str, what: str, target: str) -> bool | None:
    _, rules = compiled(tier)
    if what == "exec":
        return cm.leash_exec(rules, target)
    return cm.leash_file(rules, {"read": "ro", "write": "rw"}[what], target)


CASES = [
    pytest.param(tier, what, target, bool(row[2 + i]), id=f"{tier}-{what}-{target}")
    for row in TABLE
    for i, tier in enumerate(TIERS)
    for what, target in [row[:2]]
]


@pytest.mark.parametrize("tier, what, target, expected", CASES)
def test_cedar_engine_decides_as_the_tier_says(tier, what, target, expected):
    assert cedar_decision(tier, what, target) is expected


@pytest.mark.parametrize("tier, what, target, expected", [c for c in CASES if c.values[1] != "connect"])
def test_leash_longest_prefix_reading_agrees_with_cedar(tier, what, target, expected):
    # None would mean two equal-length rules with opposite effects: Leash would pick one at random.
    assert leash_decision(tier, what, target) is cedar_decision(tier, what, target)


@pytest.mark.parametrize("tier", TIERS)
def test_output_parses_is_deterministic_and_within_leash_limits(tier):
    profile = profiles.load_profile(tier)
    text = leash.compile_leash(profile)
    assert cedarpy.format_policies(text)
    assert text == leash.compile_leash(profiles.load_profile(tier))
    assert text.startswith(f'// Leash policy for sandbox tier "{tier}" (lineage: {" <- ".join(profile.lineage)})')
    assert "/work/" not in text and "unless" not in text  # no checkout paths (generated files are committed)
    plan = leash.plan_leash(profile)
    assert plan.section("filesystem").leash_rules <= leash.MAX_FILE_RULES
    assert plan.section("exec").leash_rules <= leash.MAX_EXEC_RULES
    for rule in cm.leash_rules(text):
        assert len(rule.target.encode()) <= leash.MAX_RULE_PATH_BYTES


@pytest.mark.parametrize("tier", TIERS)
def test_every_class_has_rules_so_leash_enforces_and_logs_it(tier):
    # A class with no rules is not enforced by Leash (internal/lsm/manager.go) but denied by Cedar.
    plan = leash.plan_leash(profiles.load_profile(tier))
    assert all(plan.section(name).enforced for name in ("filesystem", "exec", "network"))


def test_unrestricted_classes_are_leash_default_policy():
    _, rules = compiled("trusted")
    assert set(rules) == {
        cm.LeashRule(True, "open", "/"),
        cm.LeashRule(True, "ro", "/"),
        cm.LeashRule(True, "rw", "/"),
        cm.LeashRule(True, "exec", "/"),
        cm.LeashRule(True, "connect", "*"),
    }


def test_paranoid_network_is_one_forbid_on_every_host():
    _, rules = compiled("paranoid")
    assert [r for r in rules if r.op == "connect"] == [cm.LeashRule(False, "connect", "*")]


def test_no_forbid_on_every_host_next_to_permits():
    # Cedar would let `forbid Host::"*"` beat every permit; Leash reads it as "default deny".
    _, rules = compiled("strict")
    assert cm.LeashRule(False, "connect", "*") not in rules


def test_read_everywhere_does_not_make_writes_default_allow():
    # A permit on "/" would flip Leash's file default to ALLOW for writes too (file_open.go checkRootPathPolicy).
    _, rules = compiled("strict")
    assert not [r for r in rules if r.target == "/" and r.allow and r.op in ("open", "ro", "rw")]
    assert cm.leash_file(rules, "rw", "/opt/some/new/file") is False
    assert cm.leash_file(rules, "ro", "/opt/some/new/file") is True


def test_file_open_only_appears_with_both_modes_and_one_effect():
    _, rules = compiled("strict")
    for rule in (r for r in rules if r.op == "open"):
        assert cm.LeashRule(rule.allow, "ro", rule.target) in rules
        assert cm.LeashRule(rule.allow, "rw", rule.target) in rules


def intent(tier: str, what: str, target: str) -> bool:
    profile = profiles.load_profile(tier)
    if what == "read":
        return profile.filesystem.can_read(target)
    if what == "write":
        return profile.filesystem.can_write(target)
    if what == "exec":
        return cm.exec_intent(profile, target)
    host, port = target.rsplit(":", 1)
    return cm.host_intent(profile, host, int(port))


@pytest.mark.parametrize("tier, what, target, expected", [c for c in CASES if tuple(c.values[1:3]) not in GAPS | ADDED])
def test_table_is_the_profiles_intent_except_documented_gaps(tier, what, target, expected):
    assert intent(tier, what, target) is expected
