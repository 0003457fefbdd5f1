"""`policy explain`: per class, what is allowed and denied, which layer enforces it, and what no layer does."""

from __future__ import annotations

import pytest

from agent_sandbox import profiles
from agent_sandbox.compilers import explain as ex

TIERS = ("paranoid", "strict", "standard", "trusted")


def explained(tier: str) -> ex.Explanation:
    return ex.explain(profiles.load_profile(tier))


# (tier, class, where to look: a layer, "summary", "allowed", "denied" or "unenforced", text it must contain)
CLAIMS = [
    # user namespaces
    ("paranoid", "capabilities/limits", "summary", "no user namespaces"),
    ("paranoid", "capabilities/limits", "denied", "user namespaces"),
    ("paranoid", "capabilities/limits", ex.CONTAINER, "unshare and clone with CLONE_NEWUSER and setns refused"),
    ("strict", "capabilities/limits", "unenforced", "user namespaces are not blocked by the tier"),
    ("standard", "capabilities/limits", "unenforced", "podman's lets the agent create one"),
    ("trusted", "capabilities/limits", "unenforced", "docker's refuses it to a container without CAP_SYS_ADMIN"),
    # network
    ("paranoid", "network", ex.CONTAINER, "--network=none"),
    ("paranoid", "network", ex.LEASH_KERNEL, 'forbid Host::"*"'),
    ("paranoid", "network", "allowed", "loopback only"),
    ("strict", "network", "summary", "proxied allowlist"),
    ("strict", "network", "allowed", "api.anthropic.com:443"),
    ("strict", "network", ex.CONTAINER, "internal network"),
    ("strict", "network", ex.EGRESS, "Squid (one per sandbox)"),
    ("strict", "network", ex.EGRESS, "*.domain matches whole labels only"),
    ("strict", "network", ex.EGRESS, "the TLS SNI must be the CONNECT host"),
    ("strict", "network", ex.CONTAINER, "no resolver"),
    ("strict", "network", "unenforced", "Inside an allowed TLS connection the proxy sees nothing"),
    ("strict", "network", ex.LEASH_KERNEL, "resolved"),
    ("strict", "network", ex.LEASH_PROXY, "80/443"),
    ("strict", "network", "unenforced", "*.cursor.com also matches badcursor.com"),
    ("strict", "network", "unenforced", "IPv6"),
    ("standard", "network", "summary", "open, 1 denied"),
    ("standard", "network", "denied", "169.254.169.254"),
    ("standard", "network", ex.LEASH_KERNEL, "denied addresses"),
    ("standard", "network", "unenforced", "Without Leash nothing enforces network.deny"),
    ("trusted", "network", "allowed", "every host"),
    # filesystem
    ("paranoid", "filesystem", "summary", "read-only root"),
    ("paranoid", "filesystem", ex.CONTAINER, "--read-only root"),
    ("paranoid", "filesystem", ex.CONTAINER, "/workspace mounted ro"),
    ("paranoid", "filesystem", "unenforced", "Leash's own CA install"),
    ("strict", "filesystem", ex.CONTAINER, "/workspace mounted rw"),
    ("strict", "filesystem", ex.LEASH_KERNEL, "longest matching path wins"),
    ("strict", "filesystem", ex.LEASH_KERNEL, "Leash's own bootstrap: /etc/ssl/certs/"),
    ("strict", "filesystem", "denied", "/home/vscode/.ssh/**"),
    ("strict", "filesystem", "allowed", "read-only /workspace/.git/hooks/**"),
    ("strict", "filesystem", "unenforced", "Without Leash, filesystem.read and filesystem.deny are not enforced"),
    ("strict", "filesystem", "unenforced", "/home/vscode/.bashrc"),
    ("strict", "filesystem", "unenforced", "apt-get, dpkg* and update*"),
    ("strict", "filesystem", "unenforced", "/etc/shadow also covers /etc/shadow-"),
    ("trusted", "filesystem", "summary", "unrestricted"),
    ("trusted", "filesystem", "unenforced", "/home/vscode/.ssh"),
    # exec
    ("strict", "exec", "summary", "deny-list"),
    ("strict", "exec", "denied", "sudo"),
    ("strict", "exec", ex.LEASH_KERNEL, "/usr/bin, /usr/sbin, /usr/local/bin"),
    ("strict", "exec", ex.CONTAINER, "no-new-privileges"),
    ("strict", "exec", "unenforced", "only matches binaries in exec.search_path"),
    ("strict", "exec", "unenforced", "/nix/store"),
    ("trusted", "exec", "summary", "unrestricted"),
    ("trusted", "exec", "unenforced", "exec is unrestricted"),
    ("trusted", "exec", ex.CONTAINER, "no-new-privileges is off"),
    # capabilities and limits: the container runtime only
    ("strict", "capabilities/limits", ex.CONTAINER, "--cap-drop ALL"),
    ("strict", "capabilities/limits", ex.CONTAINER, "memory 8g"),
    ("paranoid", "capabilities/limits", ex.CONTAINER, "pids 256"),
    ("trusted", "capabilities/limits", "unenforced", "default container capabilities"),
    ("trusted", "capabilities/limits", "unenforced", "no memory limit"),
    # audit
    ("strict", "audit", ex.LEASH_KERNEL, "proc.exec"),
    ("strict", "audit", ex.LEASH_PROXY, "http.request"),
    ("strict", "audit", "unenforced", "Authorization"),
    ("trusted", "audit", "unenforced", "audit.level none is not applied by Leash"),
]


def look(cls: ex.ClassExplanation, where: str) -> str:
    if where in ex.LAYERS:
        what = cls.layer(where)
        assert what is not None, f"{where} plays no part in {cls.name}"
        return what
    value = getattr(cls, where)
    return value if isinstance(value, str) else "\n".join(value)


@pytest.mark.parametrize("tier, name, where, text", CLAIMS, ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CLAIMS])
def test_explanation_says(tier, name, where, text):
    assert text in look(explained(tier).of(name), where)


@pytest.mark.parametrize(
    "tier, name, layer",
    [
        ("paranoid", "network", ex.EGRESS),  # no proxy: there is no network
        ("standard", "network", ex.EGRESS),  # open tiers do not use it
        ("strict", "capabilities/limits", ex.LEASH_KERNEL),  # Leash plays no part in limits
        ("strict", "filesystem", ex.LEASH_PROXY),
    ],
)
def test_layer_plays_no_part(tier, name, layer):
    assert explained(tier).of(name).layer(layer) is None


@pytest.mark.parametrize("tier", TIERS)
def test_every_class_is_explained_with_known_layers_and_an_honest_gap_list(tier):
    expl = explained(tier)
    assert tuple(c.name for c in expl.classes) == ex.CLASSES
    for cls in expl.classes:
        assert cls.enforced_by and all(e.layer in ex.LAYERS for e in cls.enforced_by)
        assert cls.unenforced  # every class says what no layer enforces (or that nothing is missing)
    assert any("BPF LSM" in note for note in expl.notes)


@pytest.mark.parametrize("tier", TIERS)
def test_rendered_table_names_each_class_and_layer_and_is_deterministic(tier):
    text = ex.render_explanation(explained(tier))
    assert text == ex.render_explanation(explained(tier))
    for name in ex.CLASSES:
        assert f"\n{name.upper()}: " in text
    assert "container runtime" in text and "not enforced by any layer" in text
    assert "/work/" not in text  # no checkout paths: the text is committed in images/compiled
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.parametrize("tier", TIERS)
def test_codex_users_are_told_its_sandbox_fails_where_user_namespaces_are_refused(tier):
    notes = "\n".join(explained(tier).notes)
    assert ("codex with --dangerously-bypass-approvals-and-sandbox (or -s danger-full-access)" in notes) == (
        tier == "paranoid"
    )
    assert ("Codex's own sandbox" in ex.render_explanation(explained(tier))) == (tier == "paranoid")


# What the container layer of each tier loses when Leash's runner starts the target (it forwards none of our flags).
UNDER_LEASH = [
    pytest.param(
        "paranoid",
        ("--cap-drop ALL", "seccomp profile", "memory 4g", "pids 256", "read-only root", "no network"),
        ("egress proxy",),
        id="paranoid",
    ),
    pytest.param(
        "strict",
        ("--cap-drop ALL", "no-new-privileges at start", "memory 8g", "own network and egress proxy"),
        ("read-only root", "seccomp"),
        id="strict",
    ),
]


@pytest.mark.parametrize(("tier", "lost", "not_lost"), UNDER_LEASH)
def test_explain_says_what_the_tier_loses_under_leash(tier, lost, not_lost):
    note = next(n for n in explained(tier).notes if n.startswith("Under Leash"))
    for item in lost:
        assert item in note
    for item in not_lost:
        assert item not in note
