"""`agent-sandbox spawn ID --task "..."`, `list`, `logs ID`, `attach ID`, `stop ID` (and `rm ID`: cli/run.py):
agents side by side, each on its own branch `agent/ID` in its own git worktree and sandbox.

`spawn` checks everything it can before it creates anything (the ID, the repository, the branch, the engine, the
image, the tier), then creates the worktree and branch and starts the sandbox detached (spawn.py: what git needs
mounted, the gated agent command), with run's pieces (cli/run.py `prepare`, runtime.start_sandbox). Anything that
fails on the way takes back what was made: containers, network, worktree and branch. What it made is recorded in
the sandbox's state directory (`sandbox.json`), beside its proxy log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import click

from .. import egress, git, profiles, runtime
from ..engine import Engine, detect_engine, engine_named
from ..errors import EnvironmentProblem, InputError, SandboxError
from ..fsutil import atomic_write
from ..model import NetworkMode
from ..sandbox import check_name, sandbox_state_dir, state_root
from ..signals import sigterm_unwinds
from ..spawn import (
    Record,
    Status,
    batch_command,
    branch_for,
    default_worktrees,
    engine_time,
    gated,
    git_env,
    git_mounts,
    last_activity,
    now,
    state_of,
    table,
)
from .run import RunOptions, banner, parse_env, parse_hosts, prepare, resolve_agent, sandbox_options

SANDBOX_UID = 1000  # the image's user, as `run` starts it: who writes the worktree and the git directory
RECORD = "sandbox.json"


# ---------------------------------------------------------------- records
def record_path(agent_id: str, env: Mapping[str, str] | None = None) -> Path:
    return sandbox_state_dir(agent_id, env) / RECORD


def load_record(agent_id: str, env: Mapping[str, str] | None = None) -> Record | None:
    """The spawned agent ID's record, if it was spawned and not removed since."""
    path = record_path(agent_id, env)
    try:
        record = Record.from_json(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return record if record is not None and not record.removed else None


def save_record(record: Record, env: Mapping[str, str] | None = None) -> None:
    atomic_write(record_path(record.id, env), record.to_json(), mode=0o600)


def all_records(env: Mapping[str, str] | None = None) -> list[Record]:
    root = state_root(env) / "sandboxes"
    found = []
    for path in sorted(root.glob(f"*/{RECORD}")) if root.is_dir() else []:
        try:
            record = Record.from_json(path.read_text(encoding="utf-8"))
        except OSError:
            continue
        if record is not None and not record.removed:
            found.append(record)
    return found


def need_record(agent_id: str) -> Record:
    check_name(agent_id)
    record = load_record(agent_id)
    if record is None:
        raise InputError(f"no spawned agent {agent_id} (`agent-sandbox list` shows them)")
    return record


def repo_of(record: Record) -> git.Repo | None:
    try:
        stat = Path(record.git_dir).stat()
    except OSError:
        return None
    return git.Repo(Path(record.repo), Path(record.git_dir), stat.st_uid, stat.st_gid)


# ---------------------------------------------------------------- spawn
@attrs.frozen
class SpawnRequest:
    agent_id: str
    agent: str
    task: str | None
    extra: tuple[str, ...] = ()
    base: str | None = None  # --from (default: HEAD, which must then be clean)
    repo: Path | None = None  # default: the current directory
    worktrees: Path | None = None  # default: beside the repository


def check_free(
    agent_id: str, eng: Engine, repo: git.Repo, branch: str, path: Path, env: Mapping[str, str] | None = None
) -> None:
    """ID, branch and worktree path are nobody's yet (one line each way they are)."""
    record = load_record(agent_id, env)
    if record is not None:
        raise InputError(
            f"{agent_id} is in use: an agent spawned on {record.branch} in {record.worktree} "
            f"(remove it with `agent-sandbox rm {agent_id}`)"
        )
    taken = eng.existing(containers=[agent_id, f"{agent_id}-proxy"], networks=[f"{agent_id}-net"])
    if taken:
        raise InputError(
            f"{agent_id} is in use: {sorted(taken)[0]} exists already (a container or network; "
            f"`agent-sandbox rm {agent_id}` removes a sandbox's)"
        )
    if git.branch_exists(repo, branch):
        raise InputError(
            f"branch {branch} exists already in {repo.toplevel}: choose another ID, or delete the "
            f"branch (git branch -D {branch})"
        )
    if path.exists() or path.is_symlink():
        raise InputError(f"{path} exists already: choose another ID or --worktrees directory")


def choose_base(repo: git.Repo, base: str | None) -> tuple[str, str]:
    """--from, else HEAD — whose uncommitted changes the agent would not see: then the main worktree must be clean."""
    if base is not None:
        return git.resolve(repo, base)
    changed = git.dirty(repo)
    if changed:
        raise InputError(
            f"{repo.toplevel} has uncommitted changes ({', '.join(changed[:3])}"
            f"{', ...' if len(changed) > 3 else ''}) that the agent would not see: commit or stash them, "
            "or pass --from REF to start from a commit"
        )
    return git.resolve(repo, "HEAD")


def owned_repo(directory: Path) -> git.Repo:
    """The repository `directory` is in, owned by the sandbox's user (else git inside could not write to it)."""
    repo = git.find_repo(directory.absolute())
    if repo.uid != SANDBOX_UID:
        raise InputError(
            f"{repo.toplevel} belongs to uid {repo.uid}, but the sandbox's user is uid {SANDBOX_UID} (the "
            "image's): git inside could not write to it; spawn from a repository that user owns"
        )
    return repo


def create_worktree(repo: git.Repo, path: Path, branch: str, commit: str) -> git.Worktree:
    """The agent's worktree on its new branch, ready to mount; nothing left of either if that fails."""
    try:
        tree = git.add_worktree(repo, path, branch, commit)
        protect_worktree_config(repo, tree)
    except BaseException:
        drop_worktree(repo, git.Worktree(path, repo.git_dir / "worktrees" / path.name), branch)
        raise
    return tree


def drop_worktree(repo: git.Repo, tree: git.Worktree, branch: str) -> None:
    git.remove_worktree(repo, tree)
    git.delete_branch(repo, branch)
    if tree.path.parent == default_worktrees(repo.toplevel):
        remove_if_empty(tree.path.parent)


def spawn_agent(request: SpawnRequest, options: RunOptions, env: Mapping[str, str]) -> Record:
    """Create the worktree and branch and start the agent's sandbox; nothing stays behind if any step fails."""
    agent_id, agent = request.agent_id, request.agent
    check_name(agent_id)
    args = batch_command(agent, request.task, request.extra)
    if options.tier is not None:
        profiles.load_profile(options.tier)  # an unknown tier is bad input, before the engine is asked anything
    repo = owned_repo(request.repo or Path.cwd())
    branch = branch_for(agent_id)
    git.check_branch_name(repo, branch)
    path = (request.worktrees.absolute() if request.worktrees else default_worktrees(repo.toplevel)) / agent_id
    eng, profile = resolve_agent(agent, options)
    # What start_sandbox would ask the engine, asked here once, before the worktree exists (it is told
    # engine_checked): the agent image (resolve_agent), the names (check_free), the proxy image.
    check_free(agent_id, eng, repo, branch, path, env)
    if profile.network.mode is NetworkMode.PROXIED:
        runtime.check_proxy_image(eng, egress.PROXY_IMAGE)
    base, base_commit = choose_base(repo, request.base)
    prepared = prepare(agent, args or (), options, eng, profile, env)
    command = gated(prepared.launch.command) if args is not None else None
    with sigterm_unwinds():
        tree = create_worktree(repo, path, branch, base_commit)
        try:
            mounts = git_mounts(
                repo.git_dir,
                tree.path,
                tree.admin_dir,
                branch,
                writable=profile.workspace_mode == "rw",
                exists=Path.exists,
            )
            box = prepared.start(
                tree.path,
                agent_id,
                env,
                command=command,
                extra_env=git_env(agent_id),
                mounts=mounts,
                own_network=True,
                engine_checked=True,
            )
            try:
                if command is not None:
                    runtime.release(box, {k: env[k] for k in prepared.keys.inside})
                record = Record(
                    id=agent_id,
                    agent=agent,
                    tier=profile.name,
                    image=options.image,
                    engine=eng.name,
                    repo=str(repo.toplevel),
                    git_dir=str(repo.git_dir),
                    worktree=str(tree.path),
                    admin_dir=str(tree.admin_dir),
                    branch=branch,
                    base=base,
                    base_commit=base_commit,
                    task=request.task or "",
                    keys_inside=prepared.keys.inside,
                    started=now(),
                )
                save_record(record, env)
                click.echo(banner(box, agent, prepared.keys, prepared.launch), err=True)
            except BaseException:
                box.remove()
                raise
        except BaseException:
            drop_worktree(repo, tree, branch)
            raise
    return record


def remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def protect_worktree_config(repo: git.Repo, tree: git.Worktree) -> None:
    """An empty `config.worktree`, mounted read-only like the rest of the configuration: with
    extensions.worktreeConfig git reads it, and the agent must not be the one to write it."""
    path = tree.admin_dir / "config.worktree"
    if not path.exists():
        path.touch(mode=0o644)
        git.give_back(repo, [path])


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("agent_id", metavar="ID")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@click.option("--task", default=None, help="What the agent is to do (batch mode); `--agent shell`: a bash script.")
@click.option(
    "--agent",
    default="claude",
    show_default=True,
    help="The agent (one the image holds), or `shell` (without --task: idle, for `attach`).",
)
@click.option("--tier", default=None, help="Tier or profile file (default: the tier the image was built for).")
@click.option(
    "--from",
    "base",
    default=None,
    metavar="REF",
    help="Start the branch from REF (default: HEAD, whose worktree must then be clean).",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path),
    default=None,
    help="The repository (default: the one the current directory is in).",
)
@click.option(
    "--worktrees",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the worktree goes, as DIR/ID (default: <repository>.agents beside the repository).",
)
@sandbox_options
def spawn(
    agent_id: str,
    extra: tuple[str, ...],
    task: str | None,
    agent: str,
    tier: str | None,
    base: str | None,
    repo: Path | None,
    worktrees: Path | None,
    engine: str | None,
    image: str,
    ca_bundle: Path | None,
    env_pairs: tuple[str, ...],
    outbound_network: str,
    proxy_hosts: tuple[str, ...],
    keys_inside: bool,
) -> None:
    """Start agent ID on TASK in its own worktree, on branch agent/ID, in a detached sandbox.

    \b
    agent-sandbox spawn fix-tests --task "make the failing test pass"
    agent-sandbox spawn docs --agent codex --tier standard --from main --task "document the CLI"
    agent-sandbox spawn play --agent shell          # idle: agent-sandbox attach play
    """
    if extra[:1] == ("--",):
        extra = extra[1:]
    options = RunOptions(
        tier=tier,
        engine=engine,
        image=image,
        name=agent_id,
        ca_bundle=ca_bundle,
        agent_env=parse_env(env_pairs),
        outbound_network=outbound_network,
        proxy_hosts=parse_hosts(proxy_hosts),
        keys_inside=keys_inside,
    )
    request = SpawnRequest(agent_id, agent, task, extra, base, repo, worktrees)
    record = spawn_agent(request, options, dict(os.environ))
    what = (
        "idle: `agent-sandbox attach " + record.id + "`"
        if not record.task
        else f"follow it with `agent-sandbox logs --follow {record.id}`"
    )
    click.echo(f"spawned {record.id}: {record.agent} on {record.branch} in {record.worktree} ({what})")


# ---------------------------------------------------------------- list
def statuses(records: Sequence[Record]) -> list[Status]:
    """Each record's state (one `inspect` per engine for all of them), commits ahead and last activity."""
    containers: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for engine_name in sorted({r.engine for r in records}):
        names = [r.id for r in records if r.engine == engine_name]
        try:
            eng = engine_named(engine_name)
            if not eng.answers():
                raise EnvironmentProblem(f"{engine_name} does not answer")
        except SandboxError as exc:
            errors[engine_name] = str(exc)
            continue
        containers.update(inspect_all(eng, names))
    out = []
    for record in records:
        info = containers.get(record.id)
        state = (info or {}).get("State") or {}
        repo = repo_of(record)
        ahead = git.ahead(repo, record.base, record.branch) if repo else 0
        times = [
            engine_time(record.started),
            engine_time(state.get("StartedAt")),
            engine_time(state.get("FinishedAt")),
            git.last_commit_time(repo, record.branch) if repo else None,
        ]
        times += [mtime(sandbox_state_dir(record.id) / rel) for rel in ("proxy/egress.jsonl", "leash-log/events.log")]
        times.append(mtime(Path(record.admin_dir) / "index"))
        out.append(
            Status(
                record.id,
                record.agent,
                record.tier,
                record.branch,
                state_of(record, state if info else None, errors.get(record.engine, "")),
                ahead,
                record.base_label,
                last_activity(times),
                record.worktree,
                record.repo,
                record.engine,
            )
        )
    return out


def inspect_all(eng: Engine, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`inspect` of those containers that exist, by name (one command: a missing one only fails its own entry)."""
    import json

    if not names:
        return {}
    result = eng.run(["container", "inspect", *names], check=False)
    try:
        data = json.loads(result.out) if result.out.strip() else []
    except ValueError:
        return {}
    return {str(item.get("Name", "")).lstrip("/"): item for item in data if isinstance(item, dict)}


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array (every field, with paths).")
def list_agents(as_json: bool) -> None:
    """The spawned agents: ID, agent, tier, branch, state, commits ahead of the base, last activity."""
    import json

    rows = statuses(all_records())
    if as_json:
        click.echo(json.dumps([s.to_json() for s in rows], indent=2))
    elif rows:
        click.echo(table(rows), nl=False)
    else:
        click.echo("no spawned agents (agent-sandbox spawn ID --task ...)", err=True)


# ---------------------------------------------------------------- logs, attach, stop
def record_engine(record: Record) -> Engine:
    return detect_engine(record.engine)


@click.command()
@click.argument("agent_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the agent writes.")
def logs(agent_id: str, follow: bool) -> None:
    """What agent ID printed (its container's output)."""
    record = need_record(agent_id)
    eng = record_engine(record)
    if not eng.container_exists(record.id):
        raise InputError(f"{record.id} has no container any more (state: missing): `agent-sandbox rm {record.id}`")
    argv = eng.argv("logs", *(["--follow"] if follow else []), record.id)
    with sigterm_unwinds():
        raise click.exceptions.Exit(runtime.attach(argv, runtime.engine_env({})))


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("agent_id", metavar="ID")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def attach(agent_id: str, command: tuple[str, ...]) -> None:
    """A shell in agent ID's sandbox, in its worktree (or COMMAND, after --); exits with its status."""
    if command[:1] == ("--",):
        command = command[1:]
    record = need_record(agent_id)
    eng = record_engine(record)
    if not eng.running(record.id):
        state = statuses([record])[0].state
        raise InputError(f"{record.id} is not running ({state}): `agent-sandbox logs {record.id}` shows what it did")
    env = dict(os.environ)
    names = [k for k in record.keys_inside if k in env]
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    argv = eng.argv(
        "exec",
        "--interactive",
        *(["--tty"] if tty else []),
        "--workdir=/workspace",
        *(f"--env={k}" for k in names),
        record.id,
        *(command or ("bash", "-l")),
    )
    with sigterm_unwinds():
        raise click.exceptions.Exit(runtime.attach(argv, runtime.engine_env({k: env[k] for k in names})))


@click.command()
@click.argument("agent_id", metavar="ID")
def stop(agent_id: str) -> None:
    """Stop agent ID (its container and proxy); `rm` removes it, its worktree and its branch."""
    record = need_record(agent_id)
    eng = record_engine(record)
    stopped = [name for name in (record.id, f"{record.id}-proxy") if eng.container_exists(name)]
    for name in stopped:
        eng.run(["stop", "--time=10", name], check=False)
    save_record(attrs.evolve(record, stopped=now()))
    click.echo(f"stopped {record.id}" + ("" if stopped else " (it had no container)"))


# ---------------------------------------------------------------- rm (called by cli/run.py's rm)
def unsaved_work(record: Record) -> str:
    """What removing the agent would drop ("" for nothing): commits no other branch has, uncommitted changes."""
    repo = repo_of(record)
    if repo is None:
        return ""
    tree = git.Worktree(Path(record.worktree), Path(record.admin_dir))
    dropped = git.only_on(repo, record.branch) if git.branch_exists(repo, record.branch) else 0
    what = (
        [f"{dropped} commit{'s' if dropped != 1 else ''} on {record.branch} that no other branch has"]
        if dropped
        else []
    )
    what += [f"uncommitted changes in {record.worktree}"] if git.worktree_dirty(repo, tree) else []
    return " and ".join(what)


def remove_spawned(record: Record, *, force: bool, eng: Engine | None = None) -> str:
    """Containers, network, worktree and branch of a spawned agent; refused (before anything is removed) when
    that would drop commits no other branch has, or changes not committed, unless `force`."""
    work = "" if force else unsaved_work(record)
    if work:
        raise InputError(
            f"{record.id} has {work}: merge them (git merge {record.branch}) or drop them with "
            f"`agent-sandbox rm --force {record.id}`"
        )
    eng = eng or detect_engine(record.engine)
    repo = repo_of(record)
    with sigterm_unwinds():
        found = runtime.remove_leftovers(eng, record.id)
        if repo is not None:
            drop_worktree(repo, git.Worktree(Path(record.worktree), Path(record.admin_dir)), record.branch)
        save_record(attrs.evolve(record, removed=now()))
    parts = [f"{kind} {', '.join(items)}" for kind, items in found.items() if items]
    parts += [f"worktree {record.worktree}", f"branch {record.branch}"]
    return f"removed {record.id}: " + "; ".join(parts)
