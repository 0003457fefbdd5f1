"""A coordinator and N agents as one Compose project (pure: the description read, the Compose file rendered;
cli/compose.py makes the worktrees and runs the Compose tool).

The description (YAML, one file):

    name: auth-work                 # the project (default: the file's name without .yaml)
    repo: .                         # the repository, relative to this file (default: its directory)
    from: main                      # where every agent's branch starts (default: HEAD)
    tier: strict                    # every agent's tier unless it says (default: strict)
    image: localhost/agent-sandbox-devcontainer:latest
    agents:
      login:    {agent: claude, task: "Implement the login form"}
      api:      {agent: codex, tier: standard, task: "Implement the REST endpoints"}
    coordinator:
      agent: claude
      task: "Merge agent/auth-work-login and agent/auth-work-api into your branch; fix what conflicts"

Every member (the agents and the coordinator) is what `spawn` would start: sandbox `<project>-<name>` on the
branch `agent/<project>-<name>` in its own worktree, with exactly the sandbox plan's flags and mounts
(sandbox.Plan.agent_run, translated flag by flag by compilers/devcontainer.compose_service), its own network
(internal, with its own egress proxy, for a proxied tier; routed and isolated for an open one; none for paranoid)
and a state directory with its proxy's log. The coordinator starts its work once every agent with a task has
finished successfully (each leaves its exit status in a directory of its own, which the coordinator alone reads);
it can read their branches (the repository is mounted read-only) and commits on its own.

The file runs with `docker compose`, docker-compose v1 and podman-compose alike: container and network names are
fixed (`name:`), subnets and the proxy's address are static (the agent has no DNS), podman-compose is told to
start the internal networks without aardvark-dns. API keys go into the agents by name from the environment the
Compose tool runs in (`${NAME:-}`), never by value: there is no key gateway in a Compose project.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import egress
from .agents import SHELL
from .compilers.devcontainer import compose_service
from .errors import InputError, Location
from .runtime import PROXY_PROBE
from .sandbox import PROXY_ROLE, ROLE_LABEL, SANDBOX_LABEL, BindMount, Plan, check_name
from .schema import At, MapOf, Str, Table, check
from .spawn import BATCH, PROBE_FAILED, batch_command
from .yamlsource import load_yaml

DEFAULT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
COORDINATOR = "coordinator"
OUTBOUND = "outbound"  # the Compose key of the routed network the proxies share
SUBNET_POOL = ipaddress.IPv4Network("10.224.0.0/12")  # /24s for the members' networks (a pool `run` does not use)
READY_TIMEOUT = 60


@attrs.frozen
class Member:
    """One agent of the project as the description says it."""

    name: str  # the Compose service
    agent: str
    task: str | None
    tier: str
    base: str | None
    where: Location = attrs.field(eq=False)

    def sandbox(self, project: str) -> str:
        return f"{project}-{self.name}"


@attrs.frozen
class Description:
    path: Path
    project: str
    repo: Path
    image: str
    members: tuple[Member, ...]  # the agents, then the coordinator (if any)
    repo_where: Location = attrs.field(eq=False, default=Location("<description>"))

    @property
    def coordinator(self) -> Member | None:
        return next((m for m in self.members if m.name == COORDINATOR), None)

    @property
    def agents(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.name != COORDINATOR)


TEXT = Str(nonempty=True)
MEMBER = Table({"agent": TEXT, "task": TEXT, "tier": TEXT, "from": TEXT}, defaults={"agent": "claude"})
DESCRIPTION = Table(
    {
        "name": TEXT,
        "repo": TEXT,
        "from": TEXT,
        "tier": TEXT,
        "image": TEXT,
        "agents": MapOf(MEMBER, names=TEXT, what="a mapping of each agent's name to its agent, task and tier"),
        "coordinator": MEMBER,
    },
    required=("agents",),
    defaults={"repo": ".", "tier": "strict", "image": DEFAULT_IMAGE},
)


def load_description(path: Path) -> Description:
    """Read and check the description (schema.py's kinds); bad input is one InputError naming file, line and key."""
    doc = load_yaml(path)
    top = At(doc)
    fields = check(doc, DESCRIPTION)
    project = fields.get("name", path.stem)
    try:
        check_name(f"{project}-{COORDINATOR}")
    except InputError as exc:
        (top / "name").refuse(f"{project!r}: {exc.message}")
    agents: dict[str, dict[str, Any]] = fields["agents"]
    if not agents:
        (top / "agents").refuse("must name at least one agent (agents: {NAME: {agent: claude, task: ...}})")
    members = [_member(top / "agents" / name, spec, fields) for name, spec in agents.items()]
    if "coordinator" in fields:
        if COORDINATOR in agents:
            (top / "agents" / COORDINATOR).refuse(f"an agent may not be called {COORDINATOR!r}")
        members.append(_member(top / "coordinator", fields["coordinator"], fields, name=COORDINATOR))
    for member in members:
        try:
            check_name(member.sandbox(project))
        except InputError as exc:
            raise InputError(exc.message, member.where) from None
    return Description(
        path, project, (path.parent / fields["repo"]).absolute(), fields["image"], tuple(members), (top / "repo").where
    )


def _member(at: At, spec: Mapping[str, Any], fields: Mapping[str, Any], *, name: str | None = None) -> Member:
    """One agent (or the coordinator) at `at`; its tier and base default to the description's."""
    agent, task = spec["agent"], spec.get("task")
    if agent not in BATCH:
        (at / "agent").refuse(f"unknown agent {agent!r}; known: {', '.join(BATCH)}")
    try:
        batch_command(agent, task)
    except InputError as exc:
        at.refuse(exc.message)
    return Member(
        name or str(at.key[-1]),
        agent,
        task,
        spec.get("tier", fields["tier"]),
        spec.get("from", fields.get("from")),
        at.where,
    )


# ---------------------------------------------------------------- subnets
def choose_subnets(project: str, names: Sequence[str], taken: Collection[str]) -> dict[str, str]:
    """A /24 per member from SUBNET_POOL, stable for a project and member, overlapping no `taken` network nor
    each other."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [ipaddress.ip_network(t, strict=False) for t in taken]
    pool: list[ipaddress.IPv4Network] = list(SUBNET_POOL.subnets(new_prefix=24))
    chosen: dict[str, str] = {}
    for name in names:
        start = int.from_bytes(hashlib.sha256(f"{project}/{name}".encode()).digest()[:4], "big") % len(pool)
        for step in range(len(pool)):
            candidate = pool[(start + step) % len(pool)]
            if not any(candidate.overlaps(u) for u in used):
                break
        else:
            raise InputError(f"no free /24 left in {SUBNET_POOL} for {name}")
        used.append(candidate)
        chosen[name] = str(candidate)
    return chosen


def proxy_address(subnet: str) -> str:
    return str(list(ipaddress.ip_network(subnet).hosts())[1])  # .2 (.1 is the bridge)


# ---------------------------------------------------------------- rendering
def escape(text: str) -> str:
    """A literal value in a Compose file: `$` would start an interpolation."""
    return text.replace("$", "$$")


# Where an agent leaves its exit status (a host directory of its own, written by it alone) and where the
# coordinator reads every agent's (read-only): the coordinator starts once all have ended well. (Compose's
# `depends_on: service_completed_successfully` does not do: podman-compose makes it podman's --requires, which
# starts an exited dependency again, and podman 4.3 cannot start a container whose dependencies have their own.)
STATUS_DIR = "/run/agent-sandbox/status"
AGENTS_DIR = "/run/agent-sandbox/agents"
STATUS_FILE = "exit"


def entry_script(
    *, wait_proxy: bool, report: bool, wait_for: Sequence[str], probe: str = PROXY_PROBE, ready: float = READY_TIMEOUT
) -> str:
    """The bash script every member's command runs under ("$@": the agent's command line). A proxied member
    whose proxy does not answer within `ready` seconds (`probe`) does not start, as `spawn` refuses: it exits
    PROBE_FAILED, and reports that status like any other, so that the coordinator does not start either."""
    steps = []
    for name in wait_for:
        status = f"{AGENTS_DIR}/{name}/{STATUS_FILE}"
        steps.append(
            f"until [ -s {status} ]; do sleep 1; done; "
            f'if [ "$(cat {status})" != 0 ]; then echo "agent-sandbox: {name} failed (exit '
            f'$(cat {status})): not starting" >&2; exit 1; fi'
        )
    start = 'exec "$@"' if not report else '"$@"'
    if wait_proxy:
        start = (
            f"if timeout {ready:g} bash -c {shlex.quote(probe)}; then {start}; else "
            f"echo 'agent-sandbox: the egress proxy does not answer: not starting' >&2; (exit {PROBE_FAILED}); fi"
        )
    if report:
        steps.append(
            f"{start}; code=$?; echo $code > {STATUS_DIR}/{STATUS_FILE}.part && "
            f"mv {STATUS_DIR}/{STATUS_FILE}.part {STATUS_DIR}/{STATUS_FILE}; exit $code"
        )
    else:
        steps.append(start)
    return "; ".join(steps)


def wrapped(command: Sequence[str], *, wait_proxy: bool, report: bool, wait_for: Sequence[str]) -> tuple[str, ...]:
    """A member's command under its entry script (agent-sandbox is $0)."""
    if not (wait_proxy or report or wait_for):
        return tuple(command)
    script = entry_script(wait_proxy=wait_proxy, report=report, wait_for=wait_for)
    return ("/bin/bash", "-c", script, "agent-sandbox", *command)


@attrs.frozen
class Planned:
    """A member with everything decided: its sandbox plan, command, subnet, and what it waits for."""

    member: Member
    plan: Plan
    command: tuple[str, ...] | None  # None: idle (the keep-alive)
    subnet: str | None
    squid_file: Path | None  # where its squid.conf is written (proxied)
    proxy_hosts: tuple[tuple[str, str], ...] = ()
    ca_bundle: Path | None = None
    wait_for: tuple[str, ...] = ()  # the coordinator: the agents whose status it waits for

    @property
    def reports(self) -> bool:
        """An agent at work leaves its exit status for the coordinator."""
        return self.member.name != COORDINATOR and self.command is not None


def agent_service(planned: Planned, networks: Mapping[str, str]) -> dict[str, Any]:
    """The member's service: sandbox.Plan.agent_run's argv, flag by flag (escaped), as Compose keys."""
    plan = planned.plan
    address = proxy_address(planned.subnet) if plan.proxy and planned.subnet else None
    command = planned.command
    if command is not None:
        command = wrapped(command, wait_proxy=plan.proxy is not None, report=planned.reports, wait_for=planned.wait_for)
    argv = plan.agent_run(address, command=command)
    at = next(i for i, a in enumerate(argv) if a.startswith("--entrypoint="))
    flags, image, args = argv[3:at], argv[at + 1], argv[at + 2 :]
    entrypoint = argv[at].split("=", 1)[1]
    passthrough = [f.split("=", 1)[1] for f in flags if f.startswith("--env=") and "=" not in f.split("=", 1)[1]]
    kept = [escape(f) for f in flags if not (f.startswith("--env=") and "=" not in f.split("=", 1)[1])]
    service = compose_service(kept, networks)
    service["environment"] = service.get("environment", []) + [f"{n}=${{{n}:-}}" for n in passthrough]
    return {
        "image": image,
        "container_name": plan.container,
        **service,
        "entrypoint": [escape(entrypoint), *(escape(a) for a in args)],
    }


def proxy_service(planned: Planned, outbound_key: str) -> dict[str, Any]:
    plan = planned.plan
    assert plan.proxy is not None and plan.network is not None and planned.subnet and planned.squid_file
    volumes = [f"{planned.squid_file}:{egress.PROXY_CONFIG}:ro", f"{plan.log_dir}:{egress.PROXY_LOG_DIR}"]
    if planned.ca_bundle is not None:
        volumes.append(f"{planned.ca_bundle}:/etc/ssl/certs/ca-certificates.crt:ro")
    service: dict[str, Any] = {
        "image": plan.request.proxy_image,
        "container_name": plan.proxy,
        **compose_service(egress.PROXY_FLAGS),
        "labels": {SANDBOX_LABEL: plan.name, ROLE_LABEL: PROXY_ROLE},
        "volumes": volumes,
        "networks": {plan.network: {"ipv4_address": proxy_address(planned.subnet)}, outbound_key: {}},
    }
    if planned.proxy_hosts:
        service["extra_hosts"] = [f"{host}:{address}" for host, address in planned.proxy_hosts]
    return service


def render(project: str, planned: Sequence[Planned], *, outbound_network: str | None) -> dict[str, Any]:
    """The Compose document. `outbound_network`: an existing routed network the proxies join (external), else the
    project's own."""
    services: dict[str, Any] = {}
    networks: dict[str, Any] = {}
    for item in planned:
        plan = item.plan
        if plan.network is None:
            continue
        internal = plan.request.proxied
        spec: dict[str, Any] = {"name": plan.network, "labels": {SANDBOX_LABEL: plan.name}}
        if internal:
            assert item.subnet is not None
            # internal: no route out; podman-compose: without aardvark-dns (it forwards outside names)
            spec.update({"internal": True, "ipam": {"config": [{"subnet": item.subnet}]}, "x-podman.disable_dns": True})
        else:
            spec["driver_opts"] = {"isolate": "true"}  # podman routes between its networks unless told (docker ignores)
        networks[plan.network] = spec
    proxies = [i for i in planned if i.plan.proxy is not None]
    if proxies:
        networks[OUTBOUND] = (
            {"name": outbound_network, "external": True} if outbound_network else {"name": f"{project}-outbound"}
        )
    keys = {i.plan.network: i.plan.network for i in planned if i.plan.network}
    for item in planned:
        service = agent_service(item, keys)
        if item.plan.proxy is not None:
            services[f"{item.member.name}-proxy"] = proxy_service(item, OUTBOUND)
            service["depends_on"] = [f"{item.member.name}-proxy"]
        services[item.member.name] = service
    document: dict[str, Any] = {"services": services}
    if networks:
        document["networks"] = networks
    return document


def header(description: Description) -> str:
    return (
        f"# {description.project}: written by `agent-sandbox compose {description.path}` — a coordinator and "
        f"{len(description.agents)} agents,\n# each with exactly its tier's run flags, its own network and (proxied "
        "tiers) its own egress proxy. Run it with\n# `agent-sandbox compose up`, or docker compose / "
        "docker-compose / podman-compose -p PROJECT -f THIS up.\n"
    )


def status_mounts(state_dirs: Mapping[str, Path], member: Member, waits: Sequence[str]) -> tuple[BindMount, ...]:
    """An agent's own status directory (read-write); for the coordinator, every agent's it waits for (read-only)."""
    if member.name == COORDINATOR:
        return tuple(BindMount(state_dirs[name] / "status", f"{AGENTS_DIR}/{name}") for name in waits)
    return (BindMount(state_dirs[member.name] / "status", STATUS_DIR, readonly=False),)


def member_command(member: Member, launch_command: Sequence[str]) -> tuple[str, ...] | None:
    """The member's command line inside (None: `shell` without a task, idle for `attach`)."""
    if member.task is None and member.agent == SHELL:
        return None
    return tuple(launch_command)
