"""`agent-sandbox run [OPTIONS] AGENT [-- ARGS...]`: an agent at work in a sandbox, under a tier or a profile of yours.

Starts the sandbox (runtime.start_sandbox: for a proxied profile its own network and egress proxy), prints one short
banner, runs the agent attached to this terminal (its own UI with a TTY, batch without one) and exits with the
agent's status. Everything it started is removed when the agent exits, on Ctrl-C and on SIGTERM (--keep leaves it
for inspection); the proxy's log stays in the sandbox's state directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from .. import doctor, egress, images, leash_runner, profiles, runtime
from ..agents import SHELL, AgentLaunch, launch_for
from ..compilers import gateway
from ..compilers.leash import compile_leash
from ..engine import ENGINES, Engine, detect_engine
from ..errors import CommandFailed, EnvironmentProblem, InputError, Location
from ..fsutil import atomic_write
from ..images import Provider
from ..labels import LABEL_AGENTS, LABEL_TIER
from ..model import NetworkMode, Profile
from ..process import run as run_command
from ..process import which as process_which
from ..sandbox import SANDBOX_LABEL, BindMount, check_name, new_name, sandbox_state_dir
from ..signals import sigterm_unwinds

DEFAULT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
ENFORCERS = ("container", "leash", "auto")


def git_toplevel(directory: Path) -> Path:
    """The git repository `directory` is in (its top level): the default workspace."""
    result = run_command(["git", "-C", str(directory), "rev-parse", "--show-toplevel"], check=False)
    if not result.ok:
        raise InputError(f"{directory} is not in a git repository: pass --workspace DIR", Location("--workspace"))
    return Path(result.out.strip())


def resolve_workspace(given: Path | None) -> Path:
    if given is None:
        return git_toplevel(Path.cwd())
    path = given.expanduser().absolute()
    if not path.is_dir():
        raise InputError(f"{given}: no such directory", Location("--workspace"))
    return path


def image_agents(engine: Engine, image: str, labels: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The agents an image holds, from its label (written by both backends)."""
    value = (engine.image_labels(image) if labels is None else labels).get(LABEL_AGENTS, "")
    return tuple(a for a in value.split(",") if a)


def check_agent(agent: str, held: Sequence[str], image: str) -> None:
    if agent == SHELL:
        return
    catalog = images.load_catalog()
    if agent not in catalog.agents:
        raise InputError(f"unknown agent {agent!r}; known: {', '.join([*catalog.agents, SHELL])}", Location("AGENT"))
    if agent not in held:
        raise InputError(
            f"{agent} is not in image {image} (it holds: {', '.join(held) or 'no agent'}); "
            f"pick one of those, or build an image with it",
            Location("AGENT"),
        )


@attrs.frozen
class KeyPlan:
    """Where each API key of the run goes: held by the key gateway, or forwarded into the agent by name."""

    gateway: tuple[Provider, ...] = ()  # providers whose keys the sandbox's gateway holds
    inside: tuple[str, ...] = ()  # key variables forwarded to the agent's process
    why_inside: str = ""


def plan_keys(agent: str, profile: Profile, env: Mapping[str, str], *, keys_inside: bool) -> KeyPlan:
    """The gateway serves every provider the agent uses whose key is set and whose API the profile allowlists; a
    key it cannot serve (Cursor's, an open profile with no proxy, --keys-inside) goes inside by name. A profile
    without network gets none."""
    if profile.network.mode is NetworkMode.NONE:
        return KeyPlan()
    catalog = images.load_catalog()
    if agent == SHELL:
        wanted = images.api_key_vars(catalog)
        uses = set(catalog.providers)
    else:
        wanted = catalog.agent_keys(agent)
        uses = set(catalog.agents[agent].providers)
    set_keys = tuple(k for k in wanted if env.get(k))
    if keys_inside:
        return KeyPlan((), set_keys, "--keys-inside")
    held = tuple(p for p in gateway.served(profile, catalog) if p.name in uses and env.get(p.key))
    inside = tuple(k for k in set_keys if k not in {p.key for p in held})
    why = (
        ""
        if not inside
        else ("the profile has no egress proxy" if profile.network.mode is NetworkMode.OPEN else "no gateway serves it")
    )
    return KeyPlan(held, inside, why)


def banner(box: runtime.Sandbox, agent: str, keys: KeyPlan, launch: AgentLaunch) -> str:
    """What the user must know before the agent starts: profile, workspace, which layers hold on this host."""
    profile = box.profile
    box_flags = profile.container
    hardening = []
    hardening.append("no capabilities" if "ALL" in box_flags.cap_drop else "default capabilities")
    if box_flags.no_new_privileges:
        hardening.append("no-new-privileges")
    if profile.filesystem.readonly:
        hardening.append("read-only root")
    limits = [
        f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
        for name, value in (("memory", box_flags.memory), ("cpus", box_flags.cpus), ("pids", box_flags.pids))
        if value is not None
    ]
    mode = profile.network.mode
    if mode is NetworkMode.PROXIED:
        egress = (
            f"on — Squid allows {len(profile.network.allow)} host:port rules, nothing else; log {box.plan.log_file}"
        )
    elif mode is NetworkMode.NONE:
        egress = "no network at all (loopback only)"
    else:
        egress = "OFF — open network, no egress filtering (the profile allows any host)"
    lines = [
        f"agent-sandbox: {agent} in a {profile.name} sandbox ({box.name}, {box.engine.name})",
        f"  workspace  {box.workspace} -> /workspace ({profile.workspace_mode})",
        f"  container  on — {', '.join(hardening + limits)}",
        f"  egress     {egress}",
        "  Leash      not running — file, exec and per-host rules beyond the proxy are not enforced; "
        f"see `agent-sandbox policy explain {profile.name}`",
        f"  API keys   {key_line(keys)}",
    ]
    lines += [f"  note       {note}" for note in launch.notes]
    return "\n".join(lines)


def key_line(keys: KeyPlan) -> str:
    parts = []
    if keys.gateway:
        parts.append(f"{', '.join(p.key for p in keys.gateway)} held by the key gateway (the agent has a placeholder)")
    if keys.inside:
        parts.append(
            f"WARNING {', '.join(keys.inside)} inside the sandbox ({keys.why_inside}): anything the agent "
            "runs can read it"
        )
    return "; ".join(parts) or "none set"


F = TypeVar("F", bound=Callable[..., Any])

SANDBOX_OPTIONS = (
    click.option("--engine", type=click.Choice(ENGINES), default=None, help="Container engine (default: detect)."),
    click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="The agent image."),
    click.option(
        "--ca-bundle",
        type=click.Path(path_type=Path),
        default=None,
        help="A CA bundle to use inside instead of the image's (e.g. a TLS-intercepting corporate proxy's).",
    ),
    click.option(
        "-e",
        "--env",
        "env_pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a variable for the agent (not for secrets: API keys are forwarded by name).",
    ),
    click.option(
        "--outbound-network",
        default=egress.OUTBOUND_NETWORK,
        show_default=True,
        help="The routed network the egress proxy joins (proxied profiles).",
    ),
    click.option(
        "--proxy-host",
        "proxy_hosts",
        multiple=True,
        metavar="NAME=ADDRESS",
        help="Resolve NAME to ADDRESS for the egress proxy (internal hosts); the profile still decides.",
    ),
    click.option(
        "--keys-inside",
        is_flag=True,
        help="Forward API keys into the sandbox instead of keeping them in the key gateway (with a warning).",
    ),
)


def sandbox_options(command: F) -> F:
    """The options of every command that starts a sandbox (run, spawn): engine, image, CA bundle, the agent's
    variables, the proxy's network and hosts, where the keys go."""
    for option in reversed(SANDBOX_OPTIONS):
        command = option(command)
    return command


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("agent")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--tier", default=None, help="A tier name or a profile file (default: the tier the image was built for).")
@click.option(
    "--workspace",
    type=click.Path(path_type=Path),
    default=None,
    help="Host directory mounted at /workspace (default: the current git repository).",
)
@click.option("--name", default=None, help="Sandbox name (default: agent-sandbox-<random>).")
@click.option("--keep", is_flag=True, help="Leave the sandbox (containers, network) for inspection.")
@sandbox_options
@click.option(
    "--enforcer",
    type=click.Choice(ENFORCERS),
    default="container",
    show_default=True,
    help="container: the profile's flags, network and proxy; leash: under StrongDM Leash; auto: Leash where "
    "this host can enforce it.",
)
@click.option("--allow-degraded", is_flag=True, help="Run under Leash on a host that cannot enforce every rule.")
def run(
    agent: str,
    args: tuple[str, ...],
    tier: str | None,
    workspace: Path | None,
    engine: str | None,
    image: str,
    name: str | None,
    keep: bool,
    ca_bundle: Path | None,
    env_pairs: tuple[str, ...],
    outbound_network: str,
    proxy_hosts: tuple[str, ...],
    keys_inside: bool,
    enforcer: str,
    allow_degraded: bool,
) -> None:
    """Run AGENT (an agent the image holds, or `shell`) in a sandbox; arguments after `--` go to the agent.

    \b
    agent-sandbox run claude                          # Claude Code's own UI, strict tier, this repository
    agent-sandbox run claude -- -p "fix the tests"     # batch: prints the answer, exits with claude's status
    agent-sandbox run --tier paranoid shell            # a shell in the paranoid tier
    """
    if args[:1] == ("--",):  # `run AGENT -- ARGS`: the separator is ours, not the agent's
        args = args[1:]
    options = RunOptions(
        tier=tier,
        workspace=workspace,
        engine=engine,
        image=image,
        name=name,
        keep=keep,
        ca_bundle=ca_bundle,
        agent_env=parse_env(env_pairs),
        outbound_network=outbound_network,
        proxy_hosts=parse_hosts(proxy_hosts),
        keys_inside=keys_inside,
        enforcer=enforcer,
        allow_degraded=allow_degraded,
    )
    raise click.exceptions.Exit(run_agent(agent, args, options))


def parse_hosts(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        name, sep, address = pair.partition("=")
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise InputError(f"{pair!r}: write NAME=IPv4-ADDRESS", Location("--proxy-host")) from None
        if not sep or not re.fullmatch(r"[A-Za-z0-9.-]+", name):
            raise InputError(f"{pair!r}: write NAME=IPv4-ADDRESS", Location("--proxy-host"))
        out.append((name.lower(), address))
    return tuple(out)


def parse_env(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`-e NAME=VALUE` options; an API key's name is refused here (keys go by name only, never on a command
    line where `ps` shows them)."""
    keys = set(images.api_key_vars(images.load_catalog()))
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise InputError(f"{pair!r}: write NAME=VALUE", Location("--env"))
        if name in keys:
            raise InputError(
                f"{name} is an API key: export it and run again (it is forwarded by name, never "
                "taken from a command line)",
                Location("--env"),
            )
        out.append((name, value))
    return tuple(out)


@attrs.frozen
class RunOptions:
    """How to run an agent (the `run` command's options)."""

    tier: str | None = None  # default: the tier the image was built for
    workspace: Path | None = None  # default: the current git repository
    engine: str | None = None
    image: str = DEFAULT_IMAGE
    name: str | None = None
    keep: bool = False
    ca_bundle: Path | None = None
    agent_env: tuple[tuple[str, str], ...] = ()
    outbound_network: str = egress.OUTBOUND_NETWORK
    proxy_hosts: tuple[tuple[str, str], ...] = ()
    keys_inside: bool = False
    enforcer: str = "container"  # container | leash | auto
    allow_degraded: bool = False


@attrs.frozen
class Prepared:
    """An agent's sandbox, decided and not yet started: engine, tier, where its keys go, its command line."""

    engine: Engine
    image: str
    profile: Profile
    keys: KeyPlan
    launch: AgentLaunch
    options: RunOptions

    def start(
        self,
        workspace: Path,
        name: str,
        env: Mapping[str, str],
        *,
        command: Sequence[str] | None = None,
        extra_env: Sequence[tuple[str, str]] = (),
        mounts: Sequence[BindMount] = (),
        own_network: bool = False,
        engine_checked: bool = False,
    ) -> runtime.Sandbox:
        """runtime.start_sandbox with everything the options and the key plan say (the agent's own settings, the
        user's -e, the gateway's keys); `command` instead of the keep-alive."""
        options, keys = self.options, self.keys
        return runtime.start_sandbox(
            self.image,
            self.profile,
            engine=self.engine,
            workspace=workspace,
            name=name,
            host_env=env,
            ca_bundle=options.ca_bundle,
            extra_env=(*self.launch.env, *options.agent_env, *extra_env),
            outbound_network=options.outbound_network,
            proxy_hosts=options.proxy_hosts,
            gateway=keys.gateway,
            keys={p.key: env[p.key] for p in keys.gateway},
            command=command,
            mounts=mounts,
            own_network=own_network,
            engine_checked=engine_checked,
        )


def resolve_agent(agent: str, options: RunOptions) -> tuple[Engine, Profile]:
    """The engine (it answers), the image (it holds `agent`) and the tier (the option, else the image's)."""
    eng = detect_engine(options.engine)
    try:
        labels = eng.image_labels(options.image)  # one call: the image exists, and what it holds
    except CommandFailed:
        raise EnvironmentProblem(
            f"image {options.image} is not in {eng.name}'s storage: build it (`make image`, "
            "`agent-sandbox build`) or pass --image"
        ) from None
    check_agent(agent, image_agents(eng, options.image, labels), options.image)
    return eng, profiles.load_profile(options.tier or labels.get(LABEL_TIER) or "strict")


def prepare(
    agent: str, args: Sequence[str], options: RunOptions, eng: Engine, profile: Profile, env: Mapping[str, str]
) -> Prepared:
    keys = plan_keys(agent, profile, env, keys_inside=options.keys_inside)
    launch = launch_for(agent, args, images.load_catalog(), keys.gateway, keys.inside)
    return Prepared(eng, options.image, profile, keys, launch, options)


def run_agent(
    agent: str,
    args: Sequence[str],
    options: RunOptions,
    *,
    env: Mapping[str, str] | None = None,
    tty: bool | None = None,
) -> int:
    """Start the sandbox, run the agent attached to this terminal, remove everything; the agent's exit status."""
    name, keep = options.name, options.keep
    env = dict(os.environ if env is None else env)
    if name is not None:
        check_name(name)
    ws = resolve_workspace(options.workspace)
    eng, profile = resolve_agent(agent, options)
    tty = sys.stdin.isatty() and sys.stdout.isatty() if tty is None else tty
    leash = choose_leash(options, eng)
    if leash is not None:
        return run_under_leash(agent, args, options, leash, eng, options.image, profile, ws, env, name or new_name())
    prepared = prepare(agent, args, options, eng, profile, env)
    keys, launch = prepared.keys, prepared.launch
    with sigterm_unwinds():
        box = prepared.start(ws, name or new_name(), env)
        box.keep = keep
        write_sandbox_info(
            box.state_dir, agent=agent, tier=profile.name, image=options.image, engine=eng.name, enforcer="container"
        )
        try:
            click.echo(banner(box, agent, keys, launch), err=True)
            argv = box.exec_argv(launch.command, tty=tty, env_names=keys.inside, workdir="/workspace")
            return runtime.attach(argv, runtime.engine_env({k: env[k] for k in keys.inside}))
        finally:
            if keep:
                click.echo(f"agent-sandbox: kept {box.name}: remove it with `agent-sandbox rm {box.name}`", err=True)
            box.remove()


def write_sandbox_info(state: Path, **info: str) -> None:
    """sandbox.json in the state directory: what ran there (the audit trail reads agent and tier from it)."""
    import datetime as dt
    import json

    info["started"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write(state / "sandbox.json", json.dumps(info, indent=2) + "\n", mode=0o600)


def choose_leash(options: RunOptions, eng: Engine) -> str | None:
    """The leash executable when the run goes under Leash: `leash` (refused, with the reasons, where this host
    cannot enforce a profile as declared, unless --allow-degraded), `auto` (Leash where it can enforce), else None."""
    if options.enforcer == "container":
        return None
    exe = process_which("leash")
    if exe is None:
        if options.enforcer == "auto":
            return None
        raise EnvironmentProblem(
            "--enforcer leash: the leash CLI is not installed (nix build .#leash; see `agent-sandbox doctor`)"
        )
    problems = doctor.can_enforce_leash(doctor.gather(eng))
    if problems and options.enforcer == "auto":
        return None
    if problems and not options.allow_degraded:
        raise EnvironmentProblem(
            "this host cannot enforce the profile under Leash: "
            + "; ".join(problems)
            + " (see `agent-sandbox doctor`; --allow-degraded runs it anyway, weaker)"
        )
    return exe


def run_under_leash(
    agent: str,
    args: Sequence[str],
    options: RunOptions,
    exe: str,
    eng: Engine,
    image: str,
    profile: Profile,
    workspace: Path,
    env: Mapping[str, str],
    name: str,
) -> int:
    """Leash starts the target itself, from `workspace` (mounted at the same path); its log stays in the
    sandbox's state directory. Keys go inside by name: under Leash there is no key gateway."""
    catalog = images.load_catalog()
    keys = plan_keys(agent, profile, env, keys_inside=True)
    launch = launch_for(agent, args, catalog, (), keys.inside)
    state = sandbox_state_dir(name, env)
    runtime.make_state_dir(state)
    version = leash_runner.leash_version(exe)
    run = leash_runner.invocation(
        exe=exe,
        version=version,
        image=image,
        command=launch.command,
        workspace=workspace,
        state_dir=state,
        key_names=keys.inside,
    )
    atomic_write(run.policy_file, compile_leash(profile), mode=0o600)
    write_sandbox_info(state, agent=agent, tier=profile.name, image=image, engine="docker", enforcer="leash")
    run.log_dir.mkdir(mode=0o700, exist_ok=True)
    problems = doctor.can_enforce_leash(doctor.gather(eng))
    lines = [
        f"agent-sandbox: {agent} in a {profile.name} sandbox under Leash {version} ({name})",
        f"  workspace  {workspace} (Leash mounts it at the same path)",
        "  container  NOT the tier's flags: Leash's runner passes none (capabilities, limits, read-only root, "
        "network); commands enter as the image user without capabilities, with no_new_privs (the image's hook)",
        "  egress     Leash's proxy (80/443 names) and kernel connect rules; no egress proxy, no key gateway",
        f"  Leash      policy {run.policy_file}; log {run.log_dir}"
        + (f"; DEGRADED: {'; '.join(problems)}" if problems else ""),
        f"  API keys   {key_line(keys)}",
    ]
    click.echo("\n".join(lines), err=True)
    with sigterm_unwinds():
        leash_env = {**runtime.engine_env({k: env[k] for k in keys.inside}), **run.env}
        return runtime.attach(run.argv, leash_env, cwd=run.cwd)


@click.command()
@click.argument("name")
@click.option("--engine", type=click.Choice(ENGINES), default=None, help="Container engine (default: detect).")
@click.option("--force", is_flag=True, help="A spawned agent: drop its commits and changes no branch has.")
def rm(name: str, engine: str | None, force: bool) -> None:
    """Remove sandbox NAME (kept with `run --keep`, or left by a crash): its containers and network; a spawned
    agent's worktree and branch too (refused while they hold work no other branch has, unless --force). Its
    state directory (the proxy's log) stays."""
    from .spawn import load_record, remove_spawned

    check_name(name)
    record = load_record(name)
    if record is not None:
        click.echo(remove_spawned(record, force=force))
        return
    found = runtime.remove_leftovers(detect_engine(engine), name)
    if not any(found.values()):
        raise InputError(f"no sandbox named {name} (nothing labelled {SANDBOX_LABEL}={name})")
    click.echo(f"removed {name}: " + "; ".join(f"{kind} {', '.join(items)}" for kind, items in found.items() if items))
