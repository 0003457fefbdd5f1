"""Spawned agents, planned (pure): what git inside gets mounted, the agent's batch command behind its gate, the
record, and what `list` makes of an engine's answer."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from agent_sandbox import spawn
from agent_sandbox.errors import InputError
from agent_sandbox.profiles import load_profile
from agent_sandbox.sandbox import BindMount, Plan, Request

G = Path("/home/dev/project/.git")
W = Path("/home/dev/project.agents/fix")
A = G / "worktrees" / "fix"
EVERYTHING = {
    G / "objects" / "pack",
    G / "objects" / "info",
    G / "refs/heads/agent",
    G / "logs/refs/heads/agent",
    A / "commondir",
    A / "gitdir",
    A / "config.worktree",
}


def mounts(writable: bool = True, present: set[Path] = EVERYTHING) -> dict[str, tuple[str, bool]]:
    found = spawn.git_mounts(G, W, A, "agent/fix", writable=writable, exists=lambda p: p in present)
    return {m.target: (str(m.source), m.readonly) for m in found}


@pytest.mark.parametrize(
    "target, readonly",
    [
        pytest.param("/workspace/.git", True, id="the-worktrees-git-file"),
        pytest.param(str(G), True, id="git-dir:hooks,config,refs,other-worktrees"),
        pytest.param(f"{G}/objects", False, id="objects:a-commit-adds-some"),
        pytest.param(f"{G}/objects/pack", True, id="packs:history-stays"),
        pytest.param(f"{G}/objects/info", True, id="no-alternates"),
        pytest.param(f"{G}/refs/heads/agent", False, id="its-branch-namespace"),
        pytest.param(f"{G}/logs/refs/heads/agent", False, id="its-reflogs"),
        pytest.param(str(A), False, id="its-administrative-directory"),
        pytest.param(f"{A}/commondir", True, id="tied-to-this-repository"),
        pytest.param(f"{A}/gitdir", True, id="tied-to-this-worktree"),
        pytest.param(f"{A}/config.worktree", True, id="worktree-config"),
    ],
)
def test_git_inside_gets_what_a_commit_on_its_branch_needs(target, readonly):
    assert mounts()[target][1] is readonly


def test_a_mount_inside_another_comes_after_it():
    targets = list(mounts())
    for i, target in enumerate(targets):
        for parent in targets[i + 1 :]:
            assert not target.startswith(parent + "/"), f"{parent} would hide {target}"


def test_nothing_is_mounted_that_the_host_lacks():
    assert set(mounts(present=set())) == {"/workspace/.git", str(G), f"{G}/objects", str(A)}


def test_a_read_only_workspace_gets_a_read_only_git():
    assert mounts(writable=False) == {"/workspace/.git": (f"{W}/.git", True), str(G): (str(G), True)}


@pytest.mark.parametrize("git_dir", ["/workspace/.git", "/workspace/sub/.git"])
def test_a_repository_under_the_workspace_is_refused(git_dir):
    with pytest.raises(InputError, match="inside the agent's workspace"):
        spawn.git_mounts(Path(git_dir), W, A, "agent/fix", writable=True, exists=lambda p: True)


def test_a_path_with_a_comma_cannot_be_mounted():
    with pytest.raises(InputError, match="comma"):
        BindMount(Path("/home/dev/a,b"), "/x")


def test_the_mounts_reach_the_agent_container_after_the_tiers():
    extra = spawn.git_mounts(G, W, A, "agent/fix", writable=True, exists=lambda p: True)
    plan = Plan(Request("img", load_profile("strict"), W, "fix", "podman", Path("/state"), mounts=extra))
    argv = plan.agent_run("10.0.0.2")
    workspace = argv.index(f"--mount=type=bind,source={W},target=/workspace")
    assert [a for a in argv if a.startswith("--mount=type=bind")][1:] == [m.flag for m in extra]
    assert argv.index(extra[0].flag) > workspace


# ---------------------------------------------------------------- the agent's command
@pytest.mark.parametrize(
    "agent, task, extra, expected",
    [
        pytest.param("claude", "fix it", (), ("--dangerously-skip-permissions", "-p", "fix it"), id="claude"),
        pytest.param(
            "codex",
            "fix it",
            (),
            ("exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "fix it"),
            id="codex",
        ),
        pytest.param(
            "gemini", "fix it", ("--model", "m"), ("--yolo", "-p", "fix it", "--model", "m"), id="gemini+args"
        ),
        pytest.param("aider", "fix it", (), ("--yes-always", "--message", "fix it"), id="aider"),
        pytest.param("cursor", "fix it", (), ("-p", "--force", "fix it"), id="cursor"),
        pytest.param("shell", "make test", (), ("-c", "make test"), id="shell-runs-the-task-as-a-script"),
        pytest.param("shell", None, (), None, id="shell-without-a-task-is-idle"),
    ],
)
def test_each_agent_works_on_its_task_in_batch(agent, task, extra, expected):
    assert spawn.batch_command(agent, task, extra) == expected


@pytest.mark.parametrize(
    "agent, task, extra, words",
    [
        pytest.param("claude", None, (), "--task is required", id="an-agent-needs-a-task"),
        pytest.param("claude", "  ", (), "empty", id="empty-task"),
        pytest.param("shell", None, ("x",), "arguments after --", id="idle-takes-no-arguments"),
        pytest.param("nobody", "x", (), "unknown agent", id="unknown-agent"),
    ],
)
def test_a_task_that_cannot_run_is_refused(agent, task, extra, words):
    with pytest.raises(InputError, match=words):
        spawn.batch_command(agent, task, extra)


def test_every_catalog_agent_has_a_batch_mode(catalog):
    assert set(catalog.agents) <= set(spawn.BATCH)


def test_the_gate_hands_over_keys_that_survive_any_value():
    """What the host writes into the gate, read back by a shell exactly (quotes, newlines, $, backslashes)."""
    keys = {"ANTHROPIC_API_KEY": "sk-'quoted' $HOME `x` \\ \n line", "OPENAI_API_KEY": "plain"}
    script = spawn.gate_text(keys) + 'printf "%s\\0" "$ANTHROPIC_API_KEY" "$OPENAI_API_KEY"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env={}).stdout
    assert out.split("\0")[:2] == [keys["ANTHROPIC_API_KEY"], keys["OPENAI_API_KEY"]]


def test_the_gated_command_waits_then_becomes_the_agent(tmp_path):
    """The wrapper, run here with the gate moved into tmp_path: it waits for the file, sources it, removes it and
    execs the command with the keys in its environment."""
    gate = tmp_path / "go"
    script = spawn.GATE_SCRIPT.replace(spawn.GATE, str(gate))
    proc = subprocess.Popen(
        ["sh", "-c", script, "agent-sandbox", "sh", "-c", 'echo "key=$K"'], text=True, stdout=subprocess.PIPE
    )
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)  # not before the go
    gate.write_text(spawn.gate_text({"K": "v a l"}))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == "key=v a l\n" and not gate.exists()


def release_here(tmp_path: Path, probe: str | None, timeout: float = 10) -> tuple[int, Path]:
    """gate_release's exec, run here (its shell and script) with the gate moved into tmp_path and the keys on
    its standard input: its status, and where the gate is."""
    gate = tmp_path / "go"
    argv = spawn.gate_release("fix", probe, timeout)
    shell, script = argv[3:5], argv[-1].replace(spawn.GATE, str(gate))
    done = subprocess.run(
        [*shell, script], input=spawn.gate_text({"K": "secret"}), text=True, capture_output=True, timeout=30
    )
    return done.returncode, gate


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param(None, id="no-probe:an-open-or-offline-tier"),
        pytest.param("true", id="the-agent-reaches-its-proxy"),
        pytest.param("n=0; until [ $n -ge 3 ]; do n=$((n + 1)); sleep 0.05; done", id="reaches-it-after-a-while"),
        pytest.param("cat > /dev/null", id="a-probe-that-reads-its-input-never-gets-the-keys"),
    ],
)
def test_the_gate_release_opens_the_gate_owner_only_with_the_keys(tmp_path, probe):
    code, gate = release_here(tmp_path, probe)
    assert code == 0 and gate.read_text() == spawn.gate_text({"K": "secret"})
    assert gate.stat().st_mode & 0o777 == 0o600 and not gate.with_name("go.part").exists()


@pytest.mark.parametrize(
    "probe, timeout",
    [
        pytest.param("false", 10, id="the-probe-fails"),
        pytest.param("sleep 30", 0.5, id="the-probe-outlasts-its-timeout"),
    ],
)
def test_a_failed_probe_leaves_the_gate_shut(tmp_path, probe, timeout):
    code, gate = release_here(tmp_path, f"{probe}; false", timeout)
    assert code == spawn.PROBE_FAILED and not gate.exists() and not gate.with_name("go.part").exists()


@pytest.mark.parametrize(
    "probe, shell",
    [
        pytest.param(None, "sh", id="no-probe"),
        pytest.param("true", "bash", id="probe:bash-for-dev-tcp"),
    ],
)
def test_the_gate_release_is_one_exec_without_the_keys_on_its_command_line(probe, shell):
    argv = spawn.gate_release("fix", probe)
    assert argv[:5] == ["exec", "--interactive", "fix", shell, "-c"] and len(argv) == 6
    assert "umask 077" in argv[-1] and shlex.split(argv[-1])[-1] == spawn.GATE
    assert "secret" not in " ".join(argv)


def test_an_agents_commits_say_which_agent_made_them():
    env = dict(spawn.git_env("fix"))
    assert env["GIT_AUTHOR_NAME"] == env["GIT_COMMITTER_NAME"] == "agent fix"
    assert env["GIT_AUTHOR_EMAIL"] == "fix@agent-sandbox.invalid"
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert config == {"gc.auto": "0", "maintenance.auto": "false", "core.fsmonitor": "false"}


# ---------------------------------------------------------------- the record and `list`
RECORD = spawn.Record(
    id="fix",
    agent="claude",
    tier="strict",
    image="img",
    engine="podman",
    repo="/r",
    git_dir="/r/.git",
    worktree="/r.agents/fix",
    admin_dir="/r/.git/worktrees/fix",
    branch="agent/fix",
    base="refs/heads/main",
    base_commit="a" * 40,
    task="t",
    keys_inside=("CURSOR_API_KEY",),
    started="2026-11-29T10:00:00Z",
)


def test_the_record_round_trips_and_is_what_the_audit_reads():
    text = RECORD.to_json()
    assert spawn.Record.from_json(text) == RECORD
    data = json.loads(text)
    assert data["agent"] == "claude" and data["tier"] == "strict" and data["kind"] == "spawn"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"agent": "claude", "tier": "strict", "started": "x"}', id="a-run-sandbox"),
        pytest.param("not json", id="garbled"),
        pytest.param('{"kind": "spawn", "id": "x"}', id="incomplete"),
        pytest.param("[]", id="not-an-object"),
    ],
)
def test_other_sandbox_files_are_not_spawned_agents(text):
    assert spawn.Record.from_json(text) is None


@pytest.mark.parametrize(
    "container, stopped, error, state",
    [
        pytest.param({"Running": True, "ExitCode": 0}, "", "", "running", id="running"),
        pytest.param({"Running": False, "ExitCode": 3}, "", "", "exited (3)", id="exited"),
        pytest.param({"Running": False, "ExitCode": 143}, "2026-11-29T11:00:00Z", "", "stopped", id="stopped-by-stop"),
        pytest.param(None, "", "", "missing", id="container-gone"),
        pytest.param(None, "", "docker does not answer", "unknown (docker does not answer)", id="engine-down"),
    ],
)
def test_the_state_list_shows(container, stopped, error, state):
    import attrs

    assert spawn.state_of(attrs.evolve(RECORD, stopped=stopped), container, error) == state


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("2026-11-29T10:00:00Z", "2026-11-29T10:00:00Z", id="rfc3339"),
        pytest.param("2026-11-29T10:00:00.123456789Z", "2026-11-29T10:00:00Z", id="docker-nanoseconds"),
        pytest.param("2026-11-29T10:00:00.123456789+00:00", "2026-11-29T10:00:00Z", id="podman"),
        pytest.param("2026-11-29 10:00:00.123456789 +0000 UTC", "2026-11-29T10:00:00Z", id="podman-go-format"),
    ],
)
def test_engine_times_are_read_alike(text, expected):
    assert spawn.last_activity([spawn.engine_time(text)]) == expected


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00Z", "", None, "yesterday"])
def test_no_time_is_no_activity(text):
    assert spawn.engine_time(text) is None and spawn.last_activity([spawn.engine_time(text)]) == ""


def test_last_activity_is_the_newest_of_what_is_known():
    times = [spawn.engine_time("2026-11-29T10:00:00Z"), None, spawn.engine_time("2026-11-29T12:30:00Z")]
    assert spawn.last_activity(times) == "2026-11-29T12:30:00Z"


def test_the_table_has_a_column_per_question():
    status = spawn.Status(
        "fix", "claude", "strict", "agent/fix", "exited (0)", 2, "main", "2026-11-29T12:30:00Z", "/w", "/r", "podman"
    )
    lines = spawn.table([status]).splitlines()
    assert lines[0].split() == ["ID", "AGENT", "TIER", "BRANCH", "STATE", "AHEAD", "LAST", "ACTIVITY"]
    assert lines[1].split() == [
        "fix",
        "claude",
        "strict",
        "agent/fix",
        "exited",
        "(0)",
        "2",
        "of",
        "main",
        "2026-11-29T12:30:00Z",
    ]


@pytest.mark.parametrize(
    "base, label",
    [
        ("refs/heads/main", "main"),
        ("refs/remotes/origin/main", "origin/main"),
        ("refs/tags/v1", "v1"),
        ("0123456789abcdef" * 2 + "01234567", "0123456789ab"),
    ],
)
def test_the_base_is_shown_by_its_short_name(base, label):
    import attrs

    assert attrs.evolve(RECORD, base=base).base_label == label


def test_worktrees_go_beside_the_repository():
    assert spawn.default_worktrees(Path("/home/dev/project")) == Path("/home/dev/project.agents")
