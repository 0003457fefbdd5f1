"""The profile format: inheritance, merge rules, derived facts, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sandbox import profiles
from agent_sandbox.errors import InputError
from agent_sandbox.model import NetworkMode

TIERS = ["paranoid", "strict", "standard", "trusted"]


# ------------------------------------------------------------------ shipped tiers
@pytest.mark.parametrize(
    "tier, network, workspace, readonly_root, caps_dropped",
    [
        ("paranoid", NetworkMode.NONE, "ro", True, True),
        ("strict", NetworkMode.PROXIED, "rw", False, True),
        ("standard", NetworkMode.OPEN, "rw", False, True),
        ("trusted", NetworkMode.OPEN, "rw", False, False),
    ],
)
def test_tiers_say_what_the_design_table_says(tier, network, workspace, readonly_root, caps_dropped):
    profile = profiles.load_profile(tier)
    assert profile.lineage == (tier, "agent-sandbox")
    assert profile.network.mode is network
    assert profile.workspace_mode == workspace
    assert profile.filesystem.readonly is readonly_root
    assert ("ALL" in profile.container.cap_drop) is caps_dropped


@pytest.mark.parametrize("tier", ["paranoid", "strict", "standard"])
@pytest.mark.parametrize(
    "secret",
    [
        "~/.ssh/id_rsa",
        "~/.aws/credentials",
        "~/.azure/x",
        "~/.config/gcloud/creds.json",
        "~/.gnupg/k",
        "/etc/shadow",
        "/etc/sudoers",
    ],
)
def test_credentials_are_out_of_reach_in_every_tier_but_trusted(tier, secret):
    profile = profiles.load_profile(tier)
    path = secret.replace("~", profile.container.home)
    assert not profile.filesystem.can_read(path)
    assert not profile.filesystem.can_write(path)


@pytest.mark.parametrize(
    "tier, path, read, write",
    [
        ("strict", "/workspace/src/app.ts", True, True),
        ("strict", "/workspace/.git/hooks/pre-commit", True, False),
        ("strict", "/workspace/.leash/audit.log", True, False),
        ("strict", "/etc/passwd", True, False),
        ("strict", "/usr/bin/git", True, False),
        ("strict", "/home/vscode/.cache/pip/x", True, True),
        ("strict", "/home/vscode/.bashrc", True, False),
        ("paranoid", "/workspace/src/app.ts", True, False),
        ("paranoid", "/tmp/scratch", True, True),
        ("paranoid", "/home/vscode/.claude.json", True, True),
        ("standard", "/workspace/src/app.ts", True, True),
        ("trusted", "/etc/anything", True, True),
    ],
)
def test_filesystem_intent(tier, path, read, write):
    fs = profiles.load_profile(tier).filesystem
    assert (fs.can_read(path), fs.can_write(path)) == (read, write)


@pytest.mark.parametrize("tier", ["paranoid", "strict", "standard"])
@pytest.mark.parametrize("program", ["rm", "mkdir", "env", "git", "node", "python3", "make", "chmod"])
def test_ordinary_programs_are_not_denied(tier, program):
    exec_rules = profiles.load_profile(tier).exec
    assert "/**" in exec_rules.allow
    assert program not in exec_rules.deny


# ------------------------------------------------------------------ merge rules
def test_child_list_replaces_parent_list(write_profile):
    path = write_profile("""
        name: custom
        inherits: strict
        network:
          allow: ["api.anthropic.com:443"]
    """)
    profile = profiles.load_profile(path)
    assert [str(h) for h in profile.network.allow] == ["api.anthropic.com:443"]
    assert profile.lineage == ("custom", "strict", "agent-sandbox")


def test_plus_key_appends_to_parent_list_without_duplicates(write_profile):
    path = write_profile("""
        inherits: strict
        network:
          allow+: ["db.internal:5432", "api.anthropic.com:443"]
    """)
    base = profiles.load_profile("strict")
    profile = profiles.load_profile(path)
    assert [str(h) for h in profile.network.allow] == [str(h) for h in base.network.allow] + ["db.internal:5432"]


def test_appending_a_mount_the_parent_has_adds_nothing(write_profile):
    """A mount is the same mount whatever the order of its keys, and `readonly` defaults to true."""
    write_profile("name: base\ncontainer:\n  mounts:\n    - {source: /a, target: /b}\n", name="base")
    path = write_profile("""
        inherits: base
        container:
          mounts+:
            - {target: /b, readonly: true, source: /a}
            - {source: /c, target: /d, readonly: false}
    """)
    mounts = profiles.load_profile(path).container.mounts
    assert [(m.source, m.target, m.readonly) for m in mounts] == [("/a", "/b", True), ("/c", "/d", False)]


def test_maps_merge_key_by_key_and_scalars_override(write_profile):
    path = write_profile("""
        inherits: strict
        container:
          memory: 2g
    """)
    profile = profiles.load_profile(path)
    strict = profiles.load_profile("strict")
    assert profile.container.memory_bytes == 2 * 1024**3
    assert profile.container.pids == strict.container.pids  # sibling keys kept
    assert profile.container.cap_drop == ("ALL",)


def test_null_unsets_an_inherited_limit(write_profile):
    path = write_profile("""
        inherits: strict
        container:
          pids: null
    """)
    assert profiles.load_profile(path).container.pids is None


def test_name_and_description_are_not_inherited(write_profile):
    profile = profiles.load_profile(write_profile("inherits: strict\n", name="mine"))
    assert profile.name == "mine"
    assert profile.description == ""


def test_parent_is_found_next_to_the_child_first(write_profile):
    write_profile("name: base\nnetwork:\n  allow: ['example.org:443']\n", name="base")
    profile = profiles.load_profile(write_profile("inherits: base\n"))
    assert [str(h) for h in profile.network.allow] == ["example.org:443"]
    assert profile.lineage == ("custom", "base")


def test_home_paths_expand_for_the_container_user(write_profile):
    path = write_profile("""
        inherits: strict
        container:
          user: agent
        filesystem:
          deny+: ["~/.netrc"]
    """)
    fs = profiles.load_profile(path).filesystem
    assert not fs.can_read("/home/agent/.netrc")
    assert not fs.can_read("/home/agent/.ssh/id_ed25519")  # the parent's ~ expands for this user too


# ------------------------------------------------------------------ bad input: file, line, key, what to do
BAD = [
    # (profile text, expected line, expected key, words in the message)
    ("name: x\na: b: c\n", 2, "", "malformed YAML"),
    ("name: x\nnetwrok:\n  allow: []\n", 2, "netwrok", "unknown key"),
    ("name: x\nnetwork:\n  allow: []\n  alow: []\n", 4, "network.alow", "unknown key"),
    ("name: x\nnetwork:\n  allow: api.x.com\n", 3, "network.allow", "list of strings"),
    ("name: x\nnetwork:\n  allow:\n    - 443\n", 4, "network.allow[0]", "must be a string"),
    ("name: x\nnetwork:\n  allow:\n    - 'api.x.com:99999'\n", 4, "network.allow[0]", "port"),
    ("name: x\nnetwork:\n  allow:\n    - 'bad_host!.com'\n", 4, "network.allow[0]", "not a valid host"),
    ("name: x\nnetwork:\n  allow:\n    - '[2001:db8::1]:443'\n", 4, "network.allow[0]", "IPv6"),
    ("name: x\nnetwork:\n  allow:\n    - '2001:db8::1'\n", 4, "network.allow[0]", "IPv6"),
    ("name: x\nnetwork:\n  allow:\n    - '10.0.0.0/8'\n", 4, "network.allow[0]", "CIDR"),
    ("name: x\nnetwork:\n  allow:\n    - '300.1.1.1'\n", 4, "network.allow[0]", "IPv4"),
    ("name: x\nfilesystem:\n  allow:\n    - 'workspace/**'\n", 4, "filesystem.allow[0]", "absolute"),
    ("name: x\nfilesystem:\n  deny:\n    - '/home/*/.ssh'\n", 4, "filesystem.deny[0]", "trailing /**"),
    ("name: x\nfilesystem:\n  deny:\n    - '/a/../etc/shadow'\n", 4, "filesystem.deny[0]", ".."),
    ("name: x\nfilesystem:\n  readonly: yes please\n", 3, "filesystem.readonly", "true or false"),
    ("name: x\nexec:\n  deny:\n    - 'rm -rf'\n", 4, "exec.deny[0]", "a program is a name"),
    ("name: x\ncontainer:\n  memory: lots\n", 3, "container.memory", "size"),
    ("name: x\ncontainer:\n  cap_drop: [CAP_NOPE]\n", 3, "container.cap_drop[0]", "capability"),
    ("name: x\ncontainer:\n  pids: 2\n", 3, "container.pids", "pids"),
    ("name: x\ncontainer:\n  cap_add: [ALL]\n", 3, "container.cap_add[0]", "every capability"),
    ("name: x\naudit:\n  level: verbose\n", 3, "audit.level", "one of"),
    ("name: x\ncontainer:\n  user_namespaces: no thanks\n", 3, "container.user_namespaces", "true or false"),
    ("name: x\ncontainer:\n  user_namespaces:\n", 3, "container.user_namespaces", "true or false"),
    ("name: x\ncontainer:\n  memory+: [1]\n", 3, "container.memory+", "not a list"),
    ("name: x\ninherits: nosuchparent\n", 2, "inherits", "unknown parent"),
    ("- just\n- a list\n", 1, "", "mapping"),
]


@pytest.mark.parametrize("text, line, key, words", BAD)
def test_bad_input_names_file_line_and_key(write_profile, text, line, key, words):
    path = write_profile(text)
    with pytest.raises(InputError) as caught:
        profiles.load_profile(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}")
    if key:
        assert f": {key}:" in message
    assert words in message
    assert "\n" not in message


def test_inheritance_cycle_is_reported_at_the_inherits_line(write_profile):
    write_profile("name: a\ninherits: b\n", name="a")
    b = write_profile("name: b\ninherits: a\n", name="b")
    with pytest.raises(InputError, match=r"inheritance cycle: b -> a -> b"):
        profiles.load_profile(b)


def test_missing_file_is_an_input_error(tmp_path: Path):
    with pytest.raises(InputError, match="no such profile"):
        profiles.load_profile(tmp_path / "absent.yaml")
