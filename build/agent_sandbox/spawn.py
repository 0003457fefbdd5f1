"""Parallel agents, planned without running anything (pure; cli/spawn.py carries it out).

A spawned agent is a sandbox (sandbox.py: the tier's flags, its own network and egress proxy) whose workspace is a
git worktree of the user's repository on the branch `agent/<ID>`, started detached with the agent at work on a
task. Its sandbox name is its ID; its record is the sandbox's `sandbox.json` in its state directory.

git inside. A worktree's `.git` file names its administrative directory by absolute host path
(`<git dir>/worktrees/<ID>`), which names the repository's git directory (`commondir`). The agent container gets
them where git looks for them, at the same paths, and no more than a commit on its own branch needs:

    path (host = container)                        mode  why
    the worktree (at /workspace)                   rw    the profile's workspace mount (ro where the profile says)
    /workspace/.git (the worktree's .git file)     ro    git inside and on the host must not be pointed elsewhere
    <git dir>                                      ro    hooks, config, info, packed-refs, other worktrees'
                                                         administrative directories, every other branch
    <git dir>/objects                              rw    a commit adds objects
    <git dir>/objects/pack, objects/info           ro    existing history (clone and gc pack it) stays, and no
                                                         alternates are added
    <git dir>/refs/heads/agent, its reflogs        rw    the branch agent/<ID> moves (git renames a lock file there)
    <git dir>/worktrees/<ID>                       rw    its HEAD, index, logs
    .../worktrees/<ID>/commondir, gitdir           ro    the worktree stays tied to this repository

The agent can thus commit on its branch; it cannot change hooks or configuration, move `main` (or any branch
but `agent/*`), reach another agent's worktree (not mounted) or its administrative directory (read-only). It cannot
push: nothing of the host's credentials is mounted (the tier's own mounts aside: `trusted` offers ~/.ssh), a
remote on the host's disk is not mounted at all, and pushing into the repository itself fails on the read-only
refs. What it can still do: move another agent's `agent/*` branch, and add or delete loose objects (never the
packs). `docs/parallel.md` says so.

The agent's command starts gated: the container waits (at most GATE_TIMEOUT) for a file in its /tmp that the host
writes (with the keys that go inside, through a pipe) once the agent reaches its proxy, so that the agent never
starts before its way out exists, and no key is ever in the container's configuration.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .agents import SHELL
from .errors import InputError
from .model import WORKSPACE
from .sandbox import BindMount

BRANCH_PREFIX = "agent/"
KIND = "spawn"

# Where the host's "go" lands inside the agent container (/tmp is a tmpfs in every tier), and the wrapper that
# waits for it, takes the keys it carries into the environment and becomes the agent.
GATE = "/tmp/.agent-sandbox-go"
GATE_TIMEOUT = 300  # seconds: a gate nobody opens ends the container (exit 125) rather than waiting forever
GATE_SCRIPT = (
    f"n={GATE_TIMEOUT * 10}; while [ ! -e {GATE} ]; do n=$((n - 1)); "
    f'if [ "$n" -le 0 ]; then echo "agent-sandbox: never released" >&2; exit 125; fi; sleep 0.1; done; '
    f'. {GATE} && rm -f {GATE} && exec "$@"'
)

# How each agent works on a task without anyone at the terminal (its batch mode, permissions granted: the sandbox
# is the boundary). `shell` runs the task as a bash script: a stand-in for an agent's work.
BATCH: dict[str, Callable[[str], tuple[str, ...]]] = {
    "claude": lambda task: ("--dangerously-skip-permissions", "-p", task),
    "codex": lambda task: ("exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", task),
    "gemini": lambda task: ("--yolo", "-p", task),
    "aider": lambda task: ("--yes-always", "--message", task),
    "cursor": lambda task: ("-p", "--force", task),
    SHELL: lambda task: ("-c", task),
}

# git inside: who commits (an agent's commits say which agent made them), and no background maintenance (it
# would rewrite what is read-only).
GIT_CONFIG = (("gc.auto", "0"), ("maintenance.auto", "false"), ("core.fsmonitor", "false"))


# Files of the worktree's administrative directory that stay read-only: they tie it to this repository
# (`commondir`, `gitdir`) and would be configuration the host's git reads (`config.worktree`: spawn creates it empty).
ADMIN_FILES = ("commondir", "gitdir", "config.worktree")


def branch_for(agent_id: str) -> str:
    return BRANCH_PREFIX + agent_id


def default_worktrees(toplevel: Path) -> Path:
    """Beside the repository: `<parent>/<repository>.agents/` (one directory for all its agents' worktrees)."""
    return toplevel.parent / f"{toplevel.name}.agents"


def batch_command(agent: str, task: str | None, extra: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The agent's arguments for `task` (then the user's `extra`); None: `shell` with no task starts idle."""
    if task is None:
        if agent != SHELL:
            raise InputError(f"--task is required for {agent} (or --agent shell, to start idle for `attach`)")
        if extra:
            raise InputError("arguments after -- go to an agent working on a --task")
        return None
    if not task.strip():
        raise InputError("--task is empty")
    if agent not in BATCH:
        raise InputError(f"unknown agent {agent!r}; known: {', '.join(BATCH)}")
    return (*BATCH[agent](task), *extra)


def git_env(agent_id: str) -> tuple[tuple[str, str], ...]:
    who = (
        ("GIT_AUTHOR_NAME", f"agent {agent_id}"),
        ("GIT_AUTHOR_EMAIL", f"{agent_id}@agent-sandbox.invalid"),
        ("GIT_COMMITTER_NAME", f"agent {agent_id}"),
        ("GIT_COMMITTER_EMAIL", f"{agent_id}@agent-sandbox.invalid"),
    )
    config = [("GIT_CONFIG_COUNT", str(len(GIT_CONFIG)))]
    for i, (key, value) in enumerate(GIT_CONFIG):
        config += [(f"GIT_CONFIG_KEY_{i}", key), (f"GIT_CONFIG_VALUE_{i}", value)]
    return (*who, *config)


def git_mounts(
    git_dir: Path, worktree: Path, admin_dir: Path, branch: str, *, writable: bool, exists: Callable[[Path], bool]
) -> tuple[BindMount, ...]:
    """What git inside needs of the repository (the table in the module docstring), in mounting order. With
    `writable` False (a tier whose workspace is read-only) all of it is read-only. `exists` answers for the host."""
    if git_dir == Path(WORKSPACE) or Path(WORKSPACE) in git_dir.parents:
        raise InputError(f"{git_dir}: a repository under {WORKSPACE} would be mounted inside the agent's workspace")
    mounts = [BindMount(worktree / ".git", f"{WORKSPACE}/.git"), BindMount(git_dir, str(git_dir))]
    if not writable:
        return tuple(mounts)
    namespace = branch.rsplit("/", 1)[0]  # agent
    objects = git_dir / "objects"
    mounts.append(BindMount(objects, str(objects), readonly=False))
    mounts += [BindMount(objects / sub, str(objects / sub)) for sub in ("pack", "info") if exists(objects / sub)]
    mounts += [
        BindMount(git_dir / prefix / namespace, str(git_dir / prefix / namespace), readonly=False)
        for prefix in ("refs/heads", "logs/refs/heads")
        if exists(git_dir / prefix / namespace)
    ]
    mounts.append(BindMount(admin_dir, str(admin_dir), readonly=False))
    mounts += [BindMount(admin_dir / name, str(admin_dir / name)) for name in ADMIN_FILES if exists(admin_dir / name)]
    return tuple(mounts)


def gated(command: Sequence[str]) -> tuple[str, ...]:
    """`command` behind the gate: the agent container's whole command line (its entrypoint is /bin/sh)."""
    return ("/bin/sh", "-c", GATE_SCRIPT, "agent-sandbox", *command)


def gate_text(keys: Mapping[str, str]) -> str:
    """What the host writes into the gate: the keys that go inside, as shell assignments (through a pipe)."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(keys.items()))


PROBE_FAILED = 97  # gate_release's exit status when the agent did not reach its proxy


def gate_release(container: str, probe: str | None = None, timeout: float = 30) -> list[str]:
    """The exec (its standard input: gate_text) that opens the gate, owner-only — after `probe` (bash: the agent
    reaches its proxy) succeeded within `timeout`, if given: one exec for both. The probe never reads the keys."""
    script = f"umask 077 && cat > {GATE}.part && mv {GATE}.part {GATE}"
    if probe is None:
        return ["exec", "--interactive", container, "sh", "-c", script]
    script = f"timeout {timeout:g} bash -c {shlex.quote(probe)} </dev/null || exit {PROBE_FAILED}; {script}"
    return ["exec", "--interactive", container, "bash", "-c", script]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the record (sandbox.json)
@attrs.frozen
class Record:
    """What `spawn` made, kept in the sandbox's state directory; `agent` and `tier` are what the audit reads."""

    id: str
    agent: str
    tier: str
    image: str
    engine: str
    repo: str  # the main worktree
    git_dir: str
    worktree: str
    admin_dir: str
    branch: str
    base: str  # a full ref name (refs/heads/main), or a commit
    base_commit: str
    task: str = ""
    keys_inside: tuple[str, ...] = ()
    started: str = ""
    stopped: str = ""
    removed: str = ""
    enforcer: str = "container"
    project: str = ""  # the Compose project it is a member of (`agent-sandbox compose`), if any
    kind: str = KIND

    def to_json(self) -> str:
        data = attrs.asdict(self)
        data["keys_inside"] = list(self.keys_inside)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Record | None:
        """A spawned agent's record; None for another sandbox's sandbox.json (or one we cannot read)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            return None
        names = {f.name for f in attrs.fields(cls)}
        fields: dict[str, Any] = {k: (tuple(v) if k == "keys_inside" else v) for k, v in data.items() if k in names}
        try:
            return cls(**fields)
        except TypeError:
            return None

    @property
    def base_label(self) -> str:
        for prefix in ("refs/heads/", "refs/remotes/", "refs/tags/"):
            if self.base.startswith(prefix):
                return self.base.removeprefix(prefix)
        return self.base[:12]


# ---------------------------------------------------------------- what `list` shows
@attrs.frozen
class Status:
    """A spawned agent as `list` shows it."""

    id: str
    agent: str
    tier: str
    branch: str
    state: str  # running | exited (N) | stopped | missing | unknown (...)
    ahead: int
    base: str
    last_activity: str  # RFC 3339, UTC ("" when nothing is known)
    worktree: str
    repo: str
    engine: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def state_of(record: Record, container: Mapping[str, Any] | None, engine_error: str = "") -> str:
    """From the agent container's `inspect` State (None: no such container)."""
    if engine_error:
        return f"unknown ({engine_error})"
    if container is None:
        return "missing"
    if container.get("Running"):
        return "running"
    if record.stopped:
        return "stopped"
    code = container.get("ExitCode")
    return f"exited ({code})" if code is not None else str(container.get("Status") or "created")


def engine_time(text: str | None) -> float | None:
    """An engine's RFC 3339 time (nanoseconds, podman's `+0000 UTC` forms) as a POSIX time; None for zero/none."""
    if not text or text.startswith("0001-01-01"):
        return None
    value = text.strip()
    value = value.replace(" UTC", "").replace(" +0000", "+00:00")
    if " " in value and "T" not in value:
        value = value.replace(" ", "T", 1)
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, _, zone = value.partition("+")
    if "." in head:
        head, frac = head.split(".", 1)
        head += "." + frac[:6]
    try:
        parsed = dt.datetime.fromisoformat(head + ("+" + zone if zone else "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp()


def last_activity(times: Sequence[float | None]) -> str:
    known = [t for t in times if t is not None]
    if not known:
        return ""
    return dt.datetime.fromtimestamp(max(known), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(rows: Sequence[Status]) -> str:
    head = ("ID", "AGENT", "TIER", "BRANCH", "STATE", "AHEAD", "LAST ACTIVITY")
    cells = [head] + [
        (s.id, s.agent, s.tier, s.branch, s.state, f"{s.ahead} of {s.base}", s.last_activity or "-") for s in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells) + "\n"
