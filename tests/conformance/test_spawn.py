"""`agent-sandbox spawn` for real: agents side by side, each in a git worktree of a real repository on its own
branch `agent/ID`, in its own sandbox — and `list`, `logs`, `attach`, `stop`, `rm` around them.

No API key exists here: "an agent at work" is, in most tests, `--agent shell` with a scripted task — a STAND-IN for
an agent's work, doing in the worktree what an agent does (status, diff, commit). One test runs a real agent's
batch command line (Claude Code, as spawn builds it) against our stub of its provider's API.

The repositories are real (a bare remote, a main worktree, packed history, another branch), owned by the sandbox's
user (uid 1000) as a developer's repository is; the CLI runs as root, as on rootful engines with `sudo` (git
trusts the owner's repository through SUDO_UID).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from agent_sandbox import runtime
from agent_sandbox.cli import spawn as spawn_cli
from agent_sandbox.cli.run import RunOptions
from agent_sandbox.sandbox import BindMount, new_name

from . import testnet
from .conftest import Session

OWNER = 1000  # the sandbox's user, and the repositories' owner

# What an agent does in its worktree (a STAND-IN: no agent can run here without an API key).
STAND_IN_WORK = """\
set -e
git status --short --branch
echo 'print("fixed")' >> app.py
git diff --stat
git add app.py
git commit -q -m "fix: the stand-in agent's change"
git log --oneline -1
"""


def hostgit(repo: Path, *args: str, check: bool = True) -> str:
    """git on the host in the owner's repository (as root, trusted through SUDO_UID like `sudo git`)."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SUDO_UID": str(OWNER), "GIT_TERMINAL_PROMPT": "0"},
    )
    if check:
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def chown_all(path: Path) -> None:
    for item in [path, *path.rglob("*")]:
        os.chown(item, OWNER, OWNER, follow_symlinks=False)


@attrs.frozen
class Project:
    """A developer's repository: main worktree `repo` (branches main and other, history packed), bare `remote`."""

    base: Path
    repo: Path
    remote: Path

    @property
    def git_dir(self) -> Path:
        return self.repo / ".git"

    @property
    def worktrees(self) -> Path:
        return self.base / "repo.agents"


def make_project(base: Path) -> Project:
    base.mkdir(parents=True)
    remote, repo = base / "remote.git", base / "repo"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("a project\n")
    (repo / "app.py").write_text('print("hello")\n')
    for args in (
        ["add", "."],
        ["-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "commit", "-q", "-m", "initial"],
        ["branch", "other"],
        ["remote", "add", "origin", str(remote)],
        ["push", "-q", "origin", "main", "other"],
        ["gc", "-q"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    chown_all(base)
    return Project(base, repo, remote)


@attrs.define
class Spawner:
    """Runs the CLI for one test's project; removes every agent it spawned afterwards, whatever happened."""

    session: Session
    project: Project
    ids: list[str] = attrs.Factory(list)

    @property
    def state(self) -> Path:
        return self.session.base / "spawn-state"

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.session.host_env(), "AGENT_SANDBOX_STATE": str(self.state), "SUDO_UID": str(OWNER), **extra}

    def new_id(self, label: str = "as-spawn") -> str:
        agent_id = new_name(label)
        self.ids.append(agent_id)
        return agent_id

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent_sandbox.cli", *args],
            env=env or self.env(),
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def spawn(self, agent_id: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "spawn",
            agent_id,
            "--repo",
            str(self.project.repo),
            "--engine",
            self.session.engine.name,
            "--image",
            self.session.image,
            *args,
            env=env,
        )

    def spawned(self, *args: str, label: str = "as-spawn") -> str:
        agent_id = self.new_id(label)
        done = self.spawn(agent_id, *args)
        assert done.returncode == 0, done.stderr
        return agent_id

    def wait(self, agent_id: str, timeout: float = 120) -> int:
        out = self.session.engine.run(["wait", agent_id], timeout=timeout).out
        return int(out.strip().splitlines()[-1])

    def attach(self, agent_id: str, script: str) -> subprocess.CompletedProcess[str]:
        return self.cli("attach", agent_id, "--", "bash", "-c", script)

    def listed(self, agent_id: str) -> dict[str, Any] | None:
        done = self.cli("list", "--json")
        assert done.returncode == 0, done.stderr
        return next((entry for entry in json.loads(done.stdout) if entry["id"] == agent_id), None)

    def close(self) -> None:
        for agent_id in self.ids:
            self.cli("rm", "--force", agent_id)
            runtime.remove_leftovers(self.session.engine, agent_id)


@pytest.fixture
def project(session: Session) -> Project:
    return make_project(session.base / f"project-{secrets.token_hex(4)}")


@pytest.fixture
def spawner(session: Session, project: Project) -> Iterator[Spawner]:
    spawner = Spawner(session, project)
    try:
        yield spawner
    finally:
        spawner.close()


def nothing_left(spawner: Spawner, agent_id: str) -> None:
    """No container, network, worktree, branch or record of agent_id."""
    left = runtime.leftovers(spawner.session.engine, agent_id)
    assert not any(left.values()), f"{agent_id} left behind: {left}"
    repo = spawner.project.repo
    assert not (spawner.project.worktrees / agent_id).exists()
    assert f"agent/{agent_id}" not in hostgit(repo, "branch", "--list", "agent/*")
    assert hostgit(repo, "worktree", "list", "--porcelain").count("worktree ") == 1, "a worktree is still listed"
    assert spawner.listed(agent_id) is None


# ---------------------------------------------------------------- a working checkout, per tier
@pytest.mark.parametrize(
    "spawn_tier, commits",
    [
        pytest.param("strict", True, id="strict"),
        pytest.param("standard", True, id="standard"),
        pytest.param("trusted", True, id="trusted"),
        pytest.param("paranoid", False, id="paranoid-read-only"),
    ],
)
def test_a_spawned_worktree_is_a_working_checkout(spawner, spawn_tier, commits):
    """status, diff and commit on its branch inside; the commit is seen from the main repository (paranoid: the
    worktree reads, the commit fails, nothing reaches the repository)."""
    agent_id = spawner.spawned("--agent", "shell", "--tier", spawn_tier, "--task", STAND_IN_WORK)
    code = spawner.wait(agent_id)
    logs = spawner.cli("logs", agent_id)
    assert logs.returncode == 0, logs.stderr
    output = logs.stdout + logs.stderr
    assert f"## agent/{agent_id}" in output, output  # git status inside: on its branch
    repo = spawner.project.repo
    entry = spawner.listed(agent_id)
    assert entry is not None and entry["branch"] == f"agent/{agent_id}" and entry["tier"] == spawn_tier
    if commits:
        assert code == 0, output
        assert "app.py | 1 +" in output, output  # git diff inside
        assert hostgit(repo, "log", "-1", "--format=%s", f"agent/{agent_id}") == "fix: the stand-in agent's change"
        assert hostgit(repo, "log", "-1", "--format=%an <%ae>", f"agent/{agent_id}") == (
            f"agent {agent_id} <{agent_id}@agent-sandbox.invalid>"
        )
        assert entry["state"] == "exited (0)" and entry["ahead"] == 1 and entry["base"] == "main", entry
    else:
        assert code != 0 and "Read-only file system" in output, output
        assert hostgit(repo, "rev-parse", f"agent/{agent_id}") == hostgit(repo, "rev-parse", "main")
        assert entry["ahead"] == 0, entry
    assert hostgit(repo, "status", "--porcelain") == "", "the main worktree changed"
    assert entry["last_activity"], entry


# ---------------------------------------------------------------- what git inside cannot do
@attrs.frozen
class Pair:
    """Two agents of one project: `mine` idle (commands go in by `attach`), `theirs` beside it."""

    spawner: Spawner
    mine: str
    theirs: str

    def record(self, agent_id: str) -> spawn_cli.Record:
        record = spawn_cli.load_record(agent_id, self.spawner.env())
        assert record is not None
        return record


@pytest.fixture(scope="module")
def pair(session: Session) -> Iterator[Pair]:
    project = make_project(session.base / f"project-pair-{secrets.token_hex(4)}")
    spawner = Spawner(session, project)
    try:
        mine = spawner.spawned("--agent", "shell", label="as-spawn-mine")
        theirs = spawner.spawned("--agent", "shell", label="as-spawn-theirs")
        yield Pair(spawner, mine, theirs)
    finally:
        spawner.close()


def snapshot(pair: Pair) -> dict[str, str]:
    """What the attempts must leave as it was, read on the host."""
    project, theirs = pair.spawner.project, pair.record(pair.theirs)
    mine = pair.record(pair.mine)
    git_dir = project.git_dir
    return {
        "hooks": " ".join(sorted(p.name for p in (git_dir / "hooks").iterdir())),
        "config": (git_dir / "config").read_text(),
        "main": hostgit(project.repo, "rev-parse", "main"),
        "other": hostgit(project.repo, "rev-parse", "other"),
        "tags": hostgit(project.repo, "tag", "--list"),
        "remote": hostgit(project.remote, "for-each-ref"),
        "packs": " ".join(sorted(p.name for p in (git_dir / "objects" / "pack").iterdir())),
        "alternates": str((git_dir / "objects" / "info" / "alternates").exists()),
        "gitfile": (Path(mine.worktree) / ".git").read_text(),
        "commondir": (Path(mine.admin_dir) / "commondir").read_text(),
        "their files": " ".join(sorted(p.name for p in Path(theirs.worktree).iterdir())),
        "their HEAD": (Path(theirs.admin_dir) / "HEAD").read_text(),
    }


# (what, the attempt inside `mine` — $G: the git directory, $T: their worktree, $TA: their administrative
# directory — and the snapshot entry it must leave unchanged)
ATTEMPTS = [
    pytest.param('printf "#!/bin/sh\\necho pwned\\n" > "$G/hooks/post-checkout"', "hooks", id="write-a-hook"),
    pytest.param("git config core.hooksPath /workspace/.hooks", "config", id="git-config"),
    pytest.param('printf "[core]\\n\\tfsmonitor = /workspace/x\\n" >> "$G/config"', "config", id="append-config"),
    pytest.param("git commit -q --allow-empty -m evil && git update-ref refs/heads/main HEAD", "main", id="move-main"),
    pytest.param("git update-ref -d refs/heads/main", "main", id="delete-main"),
    pytest.param("git commit -q --allow-empty -m evil && git branch -f other HEAD", "other", id="move-another-branch"),
    pytest.param("git tag evil", "tags", id="tag"),
    pytest.param("git push origin HEAD:refs/heads/main", "remote", id="push-to-the-remote"),
    pytest.param("git push origin HEAD:refs/heads/pushed", "remote", id="push-a-new-branch"),
    pytest.param(
        'git commit -q --allow-empty -m evil && git push "$G" HEAD:refs/heads/other',
        "other",
        id="push-into-the-repository",
    ),
    pytest.param('rm -f "$G"/objects/pack/*', "packs", id="delete-history"),
    pytest.param('echo /workspace > "$G/objects/info/alternates"', "alternates", id="add-an-alternate"),
    pytest.param('echo "gitdir: /tmp/evil" > /workspace/.git', "gitfile", id="repoint-the-worktree"),
    pytest.param('echo /tmp/evil > "$(git rev-parse --git-dir)/commondir"', "commondir", id="repoint-the-repository"),
    pytest.param('echo x > "$T/pwned"', "their files", id="write-their-worktree"),
    pytest.param('echo "ref: refs/heads/main" > "$TA/HEAD"', "their HEAD", id="switch-their-branch"),
]


def attempt_script(pair: Pair, attempt: str) -> str:
    record, theirs = pair.record(pair.mine), pair.record(pair.theirs)
    return f"G={record.git_dir}; T={theirs.worktree}; TA={theirs.admin_dir}; {attempt}"


@pytest.mark.parametrize("attempt, keeps", ATTEMPTS)
def test_git_inside_cannot_touch_what_is_not_its_branch(pair, attempt, keeps):
    before = snapshot(pair)
    done = pair.spawner.attach(pair.mine, attempt_script(pair, attempt))
    after = snapshot(pair)
    assert after[keeps] == before[keeps], f"{keeps} changed: {done.stdout} {done.stderr}"
    assert done.returncode != 0, f"the attempt reported success: {done.stdout} {done.stderr}"


def test_another_agents_worktree_is_not_even_there(pair):
    theirs = pair.record(pair.theirs)
    done = pair.spawner.attach(pair.mine, f"ls {theirs.worktree} && exit 0; ls /workspace; exit 3")
    assert done.returncode == 3 and "No such file or directory" in done.stderr, done.stderr
    assert "app.py" in done.stdout  # its own worktree is


# The same attempts against a deliberately weakened spawn (the whole git directory mounted read-write, as a
# worktree devcontainer commonly does): each must now succeed, or the checks above prove nothing.
WEAKENED_ATTEMPTS = [
    p
    for name in (
        "write-a-hook",
        "git-config",
        "move-main",
        "move-another-branch",
        "repoint-the-worktree",
        "delete-history",
    )
    for p in ATTEMPTS
    if p.id == name
]


@pytest.fixture(scope="module")
def weakened(session: Session, pair: Pair) -> Iterator[Pair]:
    spawner = pair.spawner
    agent_id = spawner.new_id("as-spawn-weak")

    def all_writable(git_dir: Path, worktree: Path, admin_dir: Path, branch: str, **_: Any) -> tuple[BindMount, ...]:
        return (
            BindMount(worktree / ".git", "/workspace/.git", readonly=False),
            BindMount(git_dir, str(git_dir), readonly=False),
        )

    env = spawner.env()
    mp = pytest.MonkeyPatch()
    mp.setattr(spawn_cli, "git_mounts", all_writable)
    mp.setenv("SUDO_UID", str(OWNER))
    try:
        options = RunOptions(engine=session.engine.name, image=session.image, name=agent_id, tier="strict")
        spawn_cli.spawn_agent(spawn_cli.SpawnRequest(agent_id, "shell", None, repo=spawner.project.repo), options, env)
    finally:
        mp.undo()
    yield Pair(spawner, agent_id, pair.theirs)


@pytest.mark.parametrize("attempt, keeps", WEAKENED_ATTEMPTS)
def test_the_attempts_succeed_against_a_weakened_spawn(weakened, attempt, keeps, tmp_path):
    packs = weakened.spawner.project.git_dir / "objects" / "pack"
    shutil.copytree(packs, tmp_path / "packs")
    before = snapshot(weakened)
    done = weakened.spawner.attach(weakened.mine, attempt_script(weakened, attempt))
    assert snapshot(weakened)[keeps] != before[keeps], f"not caught: {done.stdout} {done.stderr}"
    restore(weakened, keeps, before, tmp_path / "packs")


def restore(pair: Pair, what: str, before: dict[str, str], packs: Path) -> None:
    """Put back what a successful attempt changed (the pair's project is shared by the module)."""
    project = pair.spawner.project
    git_dir = project.git_dir
    if what == "hooks":
        (git_dir / "hooks" / "post-checkout").unlink()
    elif what == "config":
        (git_dir / "config").write_text(before["config"])
    elif what in ("main", "other"):
        hostgit(project.repo, "update-ref", f"refs/heads/{what}", before[what])
    elif what == "gitfile":
        (Path(pair.record(pair.mine).worktree) / ".git").write_text(before["gitfile"])
    elif what == "packs":
        shutil.copytree(packs, git_dir / "objects" / "pack", dirs_exist_ok=True)


# ---------------------------------------------------------------- no agent reaches another
REACH = """\
ok=0
for target in {targets}; do
  if timeout 5 bash -c "exec 3<>/dev/tcp/${{target%:*}}/${{target#*:}}" 2>/dev/null; then echo "REACHED $target"; ok=1;
  else echo "blocked $target"; fi
done
exit $ok
"""
VIA_PROXY = "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 15 http://{target}/ 2>&1; echo"


def addresses(session: Session, container: str) -> list[str]:
    networks = (session.engine.inspect(container).get("NetworkSettings") or {}).get("Networks") or {}
    return [n["IPAddress"] for n in networks.values() if n.get("IPAddress")]


@pytest.mark.parametrize("spawn_tier", ["strict", "standard"])
def test_two_agents_cannot_reach_each_other(session, spawner, spawn_tier):
    """From one agent, every address of the other agent (a server listening there) and of its proxy refuses a
    connection, directly and through its own proxy; the other agent's server does answer at home."""
    serving = spawner.spawned(
        "--agent", "shell", "--tier", spawn_tier, "--task", "exec python3 -m http.server 8000", label="as-spawn-srv"
    )
    mine = spawner.spawned("--agent", "shell", "--tier", spawn_tier, label="as-spawn-cli")
    at_home = spawner.attach(
        serving,
        "for i in $(seq 50); do curl -sf --noproxy '*' -o /dev/null "
        "http://127.0.0.1:8000/ && exit 0; sleep 0.2; done; exit 1",
    )
    assert at_home.returncode == 0, "the other agent's server does not answer (the check would prove nothing)"
    targets = [f"{a}:8000" for a in addresses(session, serving)]
    if spawn_tier == "strict":
        targets += [f"{a}:3128" for a in addresses(session, f"{serving}-proxy")]
        own = spawner.attach(mine, "timeout 5 bash -c 'exec 3<>/dev/tcp/agent-sandbox-proxy/3128'")
        assert own.returncode == 0, "the agent does not reach its own proxy (the check would prove nothing)"
    direct = spawner.attach(mine, REACH.format(targets=" ".join(targets)))
    assert direct.returncode == 0 and "REACHED" not in direct.stdout, direct.stdout
    if spawn_tier == "strict":
        for target in targets:
            via = spawner.attach(mine, VIA_PROXY.format(target=target))
            assert via.stdout.strip().startswith("403"), f"{target} through the proxy: {via.stdout} {via.stderr}"


# ---------------------------------------------------------------- list, logs, attach, stop, rm
def test_an_idle_agent_is_listed_attached_stopped_and_removed(spawner):
    agent_id = spawner.new_id()
    done = spawner.spawn(agent_id, "--agent", "shell")
    assert done.returncode == 0 and f"agent-sandbox attach {agent_id}" in done.stdout, done.stderr
    entry = spawner.listed(agent_id)
    assert entry is not None and entry["state"] == "running" and entry["ahead"] == 0, entry
    inside = spawner.attach(agent_id, "git rev-parse --abbrev-ref HEAD; pwd")
    assert inside.returncode == 0 and inside.stdout.split() == [f"agent/{agent_id}", "/workspace"], inside
    table = spawner.cli("list")
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "AGENT",
        "TIER",
        "BRANCH",
        "STATE",
        "AHEAD",
        "LAST",
        "ACTIVITY",
    ]
    assert any(
        line.split()[:5] == [agent_id, "shell", "strict", f"agent/{agent_id}", "running"]
        for line in table.stdout.splitlines()
    ), table.stdout
    stopped = spawner.cli("stop", agent_id)
    assert stopped.returncode == 0, stopped.stderr
    assert spawner.listed(agent_id)["state"] == "stopped"
    refused = spawner.attach(agent_id, "true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "not running" in refused.stderr
    removed = spawner.cli("rm", agent_id)
    assert removed.returncode == 0, removed.stderr
    nothing_left(spawner, agent_id)


def test_from_task_to_merged_branch(spawner):
    """rm refuses to drop commits no other branch has; merged into main, they are not dropped, and rm goes on."""
    agent_id = spawner.spawned("--agent", "shell", "--task", STAND_IN_WORK)
    assert spawner.wait(agent_id) == 0
    refused = spawner.cli("rm", agent_id)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"1 commit on agent/{agent_id} that no other branch has" in refused.stderr
    assert (spawner.project.worktrees / agent_id).is_dir() and spawner.session.engine.container_exists(agent_id)
    repo = spawner.project.repo
    hostgit(
        repo,
        "-c",
        "user.name=dev",
        "-c",
        "user.email=dev@example.invalid",
        "merge",
        "-q",
        "--no-edit",
        f"agent/{agent_id}",
    )
    assert spawner.listed(agent_id)["ahead"] == 0
    removed = spawner.cli("rm", agent_id)
    assert removed.returncode == 0, removed.stderr
    assert hostgit(repo, "log", "-1", "--format=%s", "main") == "fix: the stand-in agent's change"
    nothing_left(spawner, agent_id)


def test_rm_force_drops_unmerged_work(spawner):
    agent_id = spawner.spawned("--agent", "shell", "--task", STAND_IN_WORK + "echo more >> README\n")
    assert spawner.wait(agent_id) == 0
    refused = spawner.cli("rm", agent_id)
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr, refused.stderr
    forced = spawner.cli("rm", "--force", agent_id)
    assert forced.returncode == 0, forced.stderr
    nothing_left(spawner, agent_id)


# ---------------------------------------------------------------- bad input: one line, nothing half-made
def _in_use(spawner: Spawner, agent_id: str) -> dict[str, str]:
    first = spawner.spawn(agent_id, "--agent", "shell")
    assert first.returncode == 0, first.stderr
    return {}


def _branch_exists(spawner: Spawner, agent_id: str) -> dict[str, str]:
    hostgit(spawner.project.repo, "branch", f"agent/{agent_id}", "other")
    return {}


def _path_exists(spawner: Spawner, agent_id: str) -> dict[str, str]:
    (spawner.project.worktrees / agent_id).mkdir(parents=True)
    return {}


def _dirty(spawner: Spawner, agent_id: str) -> dict[str, str]:
    (spawner.project.repo / "README").write_text("changed, not committed\n")
    return {}


def _not_owned(spawner: Spawner, agent_id: str) -> dict[str, str]:
    for item in [spawner.project.base, *spawner.project.base.rglob("*")]:
        os.chown(item, 0, 0, follow_symlinks=False)
    return {}


def _engine_down(spawner: Spawner, agent_id: str) -> dict[str, str]:
    return {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def _internal_outbound(spawner: Spawner, agent_id: str) -> dict[str, str]:
    """The proxy's routed network is internal: found after the worktree and the sandbox network exist."""
    spawner.session.engine.run(["network", "create", "--internal", f"{agent_id}-outbound"])
    return {}


def _nothing(spawner: Spawner, agent_id: str) -> dict[str, str]:
    return {}


# (what, set-up (returns extra environment), spawn's arguments ({id}: the ID, {base}: the project), exit status,
# words of the one line)
BAD_INPUT = [
    pytest.param(_in_use, ["--agent", "shell"], 2, "is in use", id="id-in-use"),
    pytest.param(_branch_exists, ["--agent", "shell"], 2, "exists already", id="branch-exists"),
    pytest.param(_path_exists, ["--agent", "shell"], 2, "exists already", id="worktree-path-exists"),
    pytest.param(
        _nothing, ["--agent", "shell", "--repo", "{base}"], 2, "not in a git repository", id="not-a-git-repository"
    ),
    pytest.param(_dirty, ["--agent", "shell"], 2, "uncommitted changes", id="dirty-main-worktree"),
    pytest.param(_nothing, ["--agent", "shell", "--tier", "lax"], 2, "lax", id="unknown-tier"),
    pytest.param(_nothing, ["--agent", "shell", "--from", "no-such-ref"], 2, "not a commit", id="unknown-base"),
    pytest.param(_nothing, ["--agent", "claude"], 2, "--task is required", id="no-task"),
    pytest.param(_nothing, ["--agent", "nobody", "--task", "x"], 2, "unknown agent", id="unknown-agent"),
    pytest.param(_not_owned, ["--agent", "shell"], 2, "belongs to uid 0", id="repository-not-the-sandbox-users"),
    pytest.param(_engine_down, ["--agent", "shell", "--engine", "docker"], 3, "does not answer", id="engine-down"),
    pytest.param(
        _nothing,
        ["--agent", "shell", "--image", "localhost/as-no-such-image:latest"],
        3,
        "localhost/as-no-such-image:latest is not in",
        id="no-such-image",
    ),
    pytest.param(
        _nothing,
        ["--agent", "shell", "--ca-bundle", "/nonexistent/ca.pem"],
        2,
        "no such CA bundle",
        id="late-refusal-after-the-worktree",
    ),
    pytest.param(
        _internal_outbound,
        ["--agent", "shell", "--outbound-network", "{id}-outbound"],
        3,
        "is internal",
        id="failure-after-the-network",
    ),
]


@pytest.mark.parametrize("setup, args, code, words", BAD_INPUT)
def test_bad_input_is_one_line_and_leaves_nothing_half_made(session, spawner, setup, args, code, words):
    agent_id = spawner.new_id("as-spawn-bad")
    extra_env = setup(spawner, agent_id)
    before_branches = hostgit(spawner.project.repo, "for-each-ref", check=False)
    before_worktrees = hostgit(spawner.project.repo, "worktree", "list", "--porcelain", check=False)
    before_left = runtime.leftovers(session.engine, agent_id)
    worktree = spawner.project.worktrees / agent_id
    existed = worktree.exists()
    argv = [a.format(id=agent_id, base=spawner.project.base) for a in args]
    try:
        done = spawner.spawn(agent_id, *argv, env=spawner.env(**extra_env))
        assert done.returncode == code, done.stderr
        assert done.stderr.count("\n") == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert hostgit(spawner.project.repo, "for-each-ref", check=False) == before_branches
        assert hostgit(spawner.project.repo, "worktree", "list", "--porcelain", check=False) == before_worktrees
        assert runtime.leftovers(session.engine, agent_id) == before_left
        assert worktree.exists() == existed
    finally:
        if setup is _internal_outbound:
            session.engine.remove_network(f"{agent_id}-outbound")


def test_a_missing_proxy_image_is_refused_before_anything_is_made(session, spawner, monkeypatch):
    """spawn asks the engine about the proxy image itself (start_sandbox, told engine_checked, does not): with
    the proxy image missing, a proxied tier is refused with the way to build it, and nothing is made."""
    from agent_sandbox import egress
    from agent_sandbox.errors import EnvironmentProblem

    agent_id = spawner.new_id("as-spawn-noproxy")
    before = hostgit(spawner.project.repo, "for-each-ref")
    monkeypatch.setattr(egress, "PROXY_IMAGE", "localhost/as-no-such-proxy:latest")
    monkeypatch.setenv("SUDO_UID", str(OWNER))
    options = RunOptions(engine=session.engine.name, image=session.image, name=agent_id, tier="strict")
    request = spawn_cli.SpawnRequest(agent_id, "shell", None, repo=spawner.project.repo)
    with pytest.raises(EnvironmentProblem, match=r"proxy image localhost/as-no-such-proxy:latest is not in .*build"):
        spawn_cli.spawn_agent(request, options, spawner.env())
    assert hostgit(spawner.project.repo, "for-each-ref") == before
    assert not (spawner.project.worktrees / agent_id).exists()
    assert not any(runtime.leftovers(session.engine, agent_id).values())


# ---------------------------------------------------------------- a real agent's batch command line
def test_a_spawned_agent_works_in_batch_through_its_proxy(session, spawner, internet):
    """Claude Code as spawn starts it (`--dangerously-skip-permissions -p TASK`), with the key gateway, against
    our stub of the Messages API: it completes the request in its worktree and exits 0; its key is never in the
    agent container's configuration."""
    from agent_sandbox.cli.run import image_agents

    if "claude" not in image_agents(session.engine, session.image):
        pytest.skip(f"{session.image} does not hold claude")
    key = f"sk-real-spawn-{secrets.token_hex(8)}"
    hosts = [a for name, address in internet.provider_hosts() for a in ("--proxy-host", f"{name}={address}")]
    agent_id = spawner.new_id("as-spawn-claude")
    done = spawner.spawn(
        agent_id,
        "--task",
        "Reply with one word.",
        "--ca-bundle",
        str(internet.ca),
        "--outbound-network",
        internet.network,
        *hosts,
        env=spawner.env(ANTHROPIC_API_KEY=key),
    )
    assert done.returncode == 0, done.stderr
    assert "held by the key gateway" in done.stderr, done.stderr
    code = spawner.wait(agent_id, timeout=240)
    logs = spawner.cli("logs", agent_id)
    assert code == 0 and testnet.REPLY in logs.stdout + logs.stderr, logs.stdout[-1500:] + logs.stderr[-1500:]
    assert key not in json.dumps(session.engine.inspect(agent_id))
    log = spawner.state / "sandboxes" / agent_id / "proxy" / "egress.jsonl"
    assert log.exists() and log.read_text().strip(), "no proxy log in the agent's state directory"
