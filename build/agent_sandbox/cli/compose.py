"""`agent-sandbox compose FILE` and `compose up|down|ps FILE`: a coordinator and N agents as one Compose project.

`compose FILE` reads the description (compose.py), makes what the Compose file refers to — each member's worktree
and branch (as `spawn` does, and checked as it checks), its state directory with the proxy's squid.conf and log
directory, its record — and writes the Compose file (default: in the state directory, `compose/<project>/`).
Run again, it keeps the members' worktrees and writes the file anew. `up` writes and starts it detached with the
engine's Compose tool, `down` stops and removes it (and the worktrees and branches of members with no work that
no other branch has: the others stay, and it says so), `ps` shows the members as `list` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import click

from .. import compose as plan_compose
from .. import git, images, profiles, runtime
from ..agents import launch_for
from ..compilers.devcontainer import compose_yaml
from ..engine import ENGINES, Engine, detect_engine
from ..errors import CommandFailed, InputError, Location
from ..fsutil import atomic_write
from ..process import run as run_command
from ..sandbox import Plan, Request, sandbox_state_dir, state_root
from ..spawn import Record, branch_for, default_worktrees, git_env, git_mounts, now, table
from .run import check_agent, image_agents, parse_env, parse_hosts, plan_keys
from .spawn import (
    SANDBOX_UID,
    check_free,
    choose_base,
    create_worktree,
    drop_worktree,
    load_record,
    owned_repo,
    save_record,
    statuses,
    unsaved_work,
)

COMPOSE_FILE = "compose.yaml"


@attrs.frozen
class Machine:
    """What the description leaves to this machine (the `compose` options)."""

    engine: str | None = None
    output: Path | None = None
    ca_bundle: Path | None = None
    outbound_network: str | None = None  # an existing routed network for the proxies (default: the project's own)
    proxy_hosts: tuple[tuple[str, str], ...] = ()
    agent_env: tuple[tuple[str, str], ...] = ()


def output_dir(description: plan_compose.Description, machine: Machine, env: Mapping[str, str]) -> Path:
    return machine.output.absolute() if machine.output else state_root(env) / "compose" / description.project


def members_made(description: plan_compose.Description, env: Mapping[str, str]) -> list[Record]:
    return [r for r in (load_record(m.sandbox(description.project), env) for m in description.members) if r]


def write(description: plan_compose.Description, machine: Machine, env: Mapping[str, str]) -> tuple[Path, Engine]:
    """Make every member's worktree (or keep the one made before), state directory and record; write the file."""
    project = description.project
    chosen: dict[plan_compose.Member, Any] = {}
    for member in description.members:
        try:
            chosen[member] = profiles.load_profile(member.tier)
        except InputError as exc:
            raise InputError(f"tier {member.tier!r}: {exc.message}", member.where) from None
    try:
        repo = owned_repo(description.repo)
    except InputError as exc:
        raise InputError(exc.message, description.repo_where) from None
    eng = detect_engine(machine.engine)
    try:
        labels = eng.image_labels(description.image)
    except CommandFailed:
        raise InputError(
            f"image {description.image} is not in {eng.name}'s storage", Location(description.path)
        ) from None
    held = image_agents(eng, description.image, labels)
    for member in description.members:
        try:
            check_agent(member.agent, held, description.image)
        except InputError as exc:
            raise InputError(exc.message, member.where) from None
    if machine.ca_bundle is not None and not machine.ca_bundle.is_file():
        raise InputError(f"{machine.ca_bundle}: no such CA bundle file", Location("--ca-bundle"))
    made: list[tuple[git.Worktree, str]] = []
    try:
        records = [
            member_record(description, member, chosen[member], repo, eng, env, made) for member in description.members
        ]
        planned = [
            plan_member(description, member, chosen[member], record, eng, machine, env)
            for member, record in zip(description.members, records, strict=True)
        ]
        taken = [
            s
            for net in eng.run(["network", "ls", "--format", "{{.Name}}"]).out.split()
            if net not in {p.plan.network for p in planned}
            for s in safe_subnets(eng, net)
        ]
        subnets = plan_compose.choose_subnets(project, [p.member.name for p in planned if p.plan.proxy], taken)
        planned = [attrs.evolve(p, subnet=subnets.get(p.member.name)) for p in planned]
        for item in planned:
            prepare_files(item)
        try:
            document = plan_compose.render(project, planned, outbound_network=machine.outbound_network)
        except ValueError as exc:
            raise InputError(str(exc), Location(description.path)) from None
        path = output_dir(description, machine, env) / COMPOSE_FILE
        atomic_write(path, plan_compose.header(description) + compose_yaml(document), mode=0o600)
        for record in records:
            save_record(record, env)
    except BaseException:
        for tree, branch in made:
            drop_worktree(repo, tree, branch)
        raise
    return path, eng


def safe_subnets(eng: Engine, network: str) -> tuple[str, ...]:
    try:
        return eng.network_subnets(network)
    except (CommandFailed, ValueError):
        return ()


def member_record(
    description: plan_compose.Description,
    member: plan_compose.Member,
    profile: Any,
    repo: git.Repo,
    eng: Engine,
    env: Mapping[str, str],
    made: list[tuple[git.Worktree, str]],
) -> Record:
    """The member's record: the one made before (its worktree is kept), or a new worktree on a new branch."""
    name = member.sandbox(description.project)
    old = load_record(name, env)
    if old is not None:
        if old.project != description.project or Path(old.repo) != repo.toplevel:
            raise InputError(f"{name} is in use by another agent ({old.worktree})", member.where)
        return attrs.evolve(
            old, agent=member.agent, tier=profile.name, task=member.task or "", image=description.image, engine=eng.name
        )
    branch = branch_for(name)
    git.check_branch_name(repo, branch)
    path = default_worktrees(repo.toplevel) / name
    check_free(name, eng, repo, branch, path, env)
    base, commit = choose_base(repo, member.base)
    tree = create_worktree(repo, path, branch, commit)
    made.append((tree, branch))
    return Record(
        id=name,
        agent=member.agent,
        tier=profile.name,
        image=description.image,
        engine=eng.name,
        repo=str(repo.toplevel),
        git_dir=str(repo.git_dir),
        worktree=str(tree.path),
        admin_dir=str(tree.admin_dir),
        branch=branch,
        base=base,
        base_commit=commit,
        task=member.task or "",
        started=now(),
        project=description.project,
    )


def plan_member(
    description: plan_compose.Description,
    member: plan_compose.Member,
    profile: Any,
    record: Record,
    eng: Engine,
    machine: Machine,
    env: Mapping[str, str],
) -> plan_compose.Planned:
    """The member's sandbox plan: what `spawn` would start (keys by name: no key gateway in Compose)."""
    from ..spawn import batch_command

    args = batch_command(member.agent, member.task)
    keys = plan_keys(member.agent, profile, env, keys_inside=True)
    launch = launch_for(member.agent, args or (), images.load_catalog(), (), keys.inside)
    skip, _ = runtime.skipped_mount_warnings(profile, env)
    mounts = git_mounts(
        Path(record.git_dir),
        Path(record.worktree),
        Path(record.admin_dir),
        record.branch,
        writable=profile.workspace_mode == "rw",
        exists=Path.exists,
    )
    waits = (
        tuple(m.name for m in description.agents if m.task is not None)
        if member.name == plan_compose.COORDINATOR
        else ()
    )
    states = {m.name: sandbox_state_dir(m.sandbox(description.project), env) for m in description.members}
    if args is not None or waits:
        mounts += plan_compose.status_mounts(states, member, waits)
    request = Request(
        description.image,
        profile,
        Path(record.worktree),
        record.id,
        eng.name,
        sandbox_state_dir(record.id, env),
        SANDBOX_UID,
        SANDBOX_UID,
        host_env=dict(env),
        ca_bundle=machine.ca_bundle,
        proxy_hosts=machine.proxy_hosts,
        env=(*launch.env, *git_env(record.id), *machine.agent_env),
        skip_mounts=skip,
        mounts=mounts,
        own_network=True,
    )
    plan = Plan(request)
    command = plan_compose.member_command(member, launch.command) if args is not None else None
    return plan_compose.Planned(
        member,
        plan,
        command,
        None,
        plan.squid_conf if plan.proxy else None,
        machine.proxy_hosts,
        machine.ca_bundle,
        waits,
    )


def prepare_files(item: plan_compose.Planned) -> None:
    """The member's state directory: seccomp profile (paranoid), squid.conf and the proxy's log directory."""
    plan = item.plan
    runtime.make_state_dir(plan.request.state_dir)
    if plan.seccomp_text is not None:
        atomic_write(plan.seccomp_file, plan.seccomp_text, mode=0o600)
    if plan.proxy is not None and item.subnet is not None:
        runtime.prepare_proxy_files(plan, item.subnet)
    if item.reports:  # the agent's own, empty: a new run's coordinator waits for a new status
        status = plan.request.state_dir / "status"
        status.mkdir(mode=0o700, exist_ok=True)
        (status / plan_compose.STATUS_FILE).unlink(missing_ok=True)
        if os.geteuid() == 0:
            os.chown(status, SANDBOX_UID, SANDBOX_UID)


def tool(
    eng: Engine, project: str, path: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> str:
    argv = [*eng.compose_command(), "-p", project, "-f", str(path), *args]
    result = run_command(argv, check=check, timeout=600, env=env, cwd=str(path.parent))
    return result.out + result.err


# ---------------------------------------------------------------- the command
class ComposeGroup(click.Group):
    """`compose FILE` is `compose write FILE`; `compose up|down|ps FILE` the others."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["write", *args]
        return super().resolve_command(ctx, args)


def machine_options(func: Any) -> Any:
    for option in reversed(
        [
            click.argument("file", type=click.Path(path_type=Path)),
            click.option(
                "-o",
                "--output",
                type=click.Path(path_type=Path),
                default=None,
                help="Directory for compose.yaml (default: the state directory's compose/<project>/).",
            ),
            click.option(
                "--engine", type=click.Choice(ENGINES), default=None, help="Container engine (default: detect)."
            ),
        ]
    ):
        func = option(func)
    return func


def write_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--ca-bundle",
                type=click.Path(path_type=Path),
                default=None,
                help="A CA bundle to use inside instead of the image's.",
            ),
            click.option(
                "--outbound-network",
                default=None,
                help="An existing routed network for the proxies (default: the project's own).",
            ),
            click.option(
                "--proxy-host",
                "proxy_hosts",
                multiple=True,
                metavar="NAME=ADDRESS",
                help="Resolve NAME to ADDRESS for the egress proxies; the tiers still decide.",
            ),
            click.option(
                "-e",
                "--env",
                "env_pairs",
                multiple=True,
                metavar="NAME=VALUE",
                help="Set a variable for every agent (not for secrets).",
            ),
        ]
    ):
        func = option(func)
    return func


def machine_of(
    output: Path | None,
    engine: str | None,
    ca_bundle: Path | None = None,
    outbound_network: str | None = None,
    proxy_hosts: Sequence[str] = (),
    env_pairs: Sequence[str] = (),
) -> Machine:
    return Machine(
        engine,
        output,
        ca_bundle.absolute() if ca_bundle else None,
        outbound_network,
        parse_hosts(proxy_hosts),
        parse_env(env_pairs),
    )


@click.group(cls=ComposeGroup)
def compose() -> None:
    """A coordinator and N agents as one Compose project: `compose FILE` writes it, `compose up|down|ps FILE`.

    \b
    agent-sandbox compose agents.yaml          # worktrees, branches, compose.yaml (path printed)
    agent-sandbox compose up agents.yaml       # ... and start it (docker compose / docker-compose / podman-compose)
    agent-sandbox compose ps agents.yaml       # the members as `list` shows them
    agent-sandbox compose down agents.yaml     # stop and remove; worktrees with unmerged work stay
    """


@compose.command("write")
@machine_options
@write_options
def write_command(
    file: Path,
    output: Path | None,
    engine: str | None,
    ca_bundle: Path | None,
    outbound_network: str | None,
    proxy_hosts: tuple[str, ...],
    env_pairs: tuple[str, ...],
) -> None:
    """Write FILE's Compose project (and make its worktrees)."""
    description = plan_compose.load_description(file)
    path, _ = write(
        description, machine_of(output, engine, ca_bundle, outbound_network, proxy_hosts, env_pairs), os.environ
    )
    click.echo(str(path))


@compose.command("up")
@machine_options
@write_options
def up(
    file: Path,
    output: Path | None,
    engine: str | None,
    ca_bundle: Path | None,
    outbound_network: str | None,
    proxy_hosts: tuple[str, ...],
    env_pairs: tuple[str, ...],
) -> None:
    """Write FILE's Compose project and start it, detached."""
    description = plan_compose.load_description(file)
    machine = machine_of(output, engine, ca_bundle, outbound_network, proxy_hosts, env_pairs)
    path, eng = write(description, machine, os.environ)
    inside = sorted({k for k in images.api_key_vars(images.load_catalog()) if os.environ.get(k)})
    if inside:
        click.echo(
            f"agent-sandbox: WARNING {', '.join(inside)} inside the agents' sandboxes (no key gateway in a "
            "Compose project): anything an agent runs can read it",
            err=True,
        )
    try:
        tool(eng, description.project, path, "up", "--detach")
    except BaseException:
        tool(eng, description.project, path, "down", "--volumes", check=False)
        raise
    click.echo(table(statuses(members_made(description, os.environ))), nl=False)


@compose.command("down")
@machine_options
@click.option("--force", is_flag=True, help="Also drop worktrees and branches holding work no other branch has.")
def down(file: Path, output: Path | None, engine: str | None, force: bool) -> None:
    """Stop and remove FILE's Compose project, and the worktrees and branches with nothing left to merge."""
    from .spawn import remove_spawned

    description = plan_compose.load_description(file)
    path = output_dir(description, machine_of(output, engine), os.environ) / COMPOSE_FILE
    eng = detect_engine(engine)
    if path.is_file():
        tool(eng, description.project, path, "down", "--volumes")
    for record in members_made(description, os.environ):
        work = "" if force else unsaved_work(record)
        if work:
            click.echo(
                f"kept {record.id}: {work} (merge them, then `agent-sandbox rm {record.id}`; or compose down --force)"
            )
            continue
        click.echo(remove_spawned(record, force=True, eng=eng))


@compose.command("ps")
@machine_options
@click.option("--json", "as_json", is_flag=True, help="One JSON array (every field, with paths).")
def ps(file: Path, output: Path | None, engine: str | None, as_json: bool) -> None:
    """FILE's members: agent, tier, branch, state, commits ahead, last activity."""
    description = plan_compose.load_description(file)
    rows = statuses(members_made(description, os.environ))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in rows], indent=2))
    else:
        click.echo(table(rows), nl=False)
