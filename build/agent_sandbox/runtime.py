"""Start and stop sandboxes on podman or docker: what sandbox.py plans, carried out and undone.

`start_sandbox` creates, in order, the sandbox's state directory (with the tier's seccomp profile, if it has one),
(proxied tiers) its internal network and its egress proxy, then the agent container with exactly the tier's
compiled flags, and hands back a `Sandbox` (a
context manager) that removes everything again in reverse — also when the start fails half-way, and whatever
interrupts it (Ctrl-C, SIGTERM via cli/signals). The proxy's log stays in the state directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import attrs

from . import egress
from .compilers.gateway import keys_file
from .compilers.runargs import api_key_vars, missing_mounts
from .engine import Engine, detect_engine, is_internal
from .errors import CommandFailed, EnvironmentProblem, InputError
from .fsutil import atomic_write
from .images import Provider
from .model import Profile
from .sandbox import (
    SANDBOX_LABEL,
    BindMount,
    Plan,
    Request,
    check_name,
    new_name,
    sandbox_state_dir,
)

# Debian's `proxy` user (base-passwd's fixed uid/gid 13), which Squid drops to in the proxy image: it writes the
# log. On a rootful engine the container's uid 13 is the host's.
PROXY_UID = 13
READY_TIMEOUT = 30.0


def as_engine(engine: Engine | str) -> Engine:
    return engine if isinstance(engine, Engine) else detect_engine(engine)


def engine_env(host_env: Mapping[str, str] | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run the engine with: `base` (this process's) without any API-key variable, then those of
    `host_env` — so that a caller decides exactly which keys a `--env=NAME` can forward."""
    env = dict(os.environ if base is None else base)
    for var in api_key_vars():
        env.pop(var, None)
    if host_env is not None:
        env.update({var: host_env[var] for var in api_key_vars() if var in host_env})
    return env


# ---------------------------------------------------------------- the sandbox
@attrs.define
class Sandbox:
    """A running sandbox. Use as a context manager, or call `remove()` (idempotent; never raises)."""

    engine: Engine
    plan: Plan
    undo: list[list[str]] = attrs.Factory(list)  # engine commands that remove what was created, in order
    proxy_address: str | None = None
    keep: bool = False
    removed: bool = False
    warnings: list[str] = attrs.Factory(list)  # what the start left out, and why (also told to `on_warning`)

    @property
    def name(self) -> str:
        return self.plan.container

    @property
    def image(self) -> str:
        return self.plan.request.image

    @property
    def profile(self) -> Profile:
        return self.plan.request.profile

    @property
    def workspace(self) -> Path:
        return self.plan.request.workspace

    @property
    def state_dir(self) -> Path:
        return self.plan.request.state_dir

    @property
    def host_spec(self) -> str:
        """The pytest-testinfra host specification (`podman://NAME`, `docker://NAME`)."""
        return f"{self.engine.name}://{self.name}"

    def exec(self, *command: str, timeout: float = 60, user: str | None = None) -> tuple[int, str, str]:
        args = ["exec"] + (["--user", user] if user else []) + [self.name, *command]
        result = self.engine.run(args, timeout=timeout, check=False)
        return result.code, result.out, result.err

    def exec_argv(
        self, command: Sequence[str], *, tty: bool, env_names: Sequence[str] = (), workdir: str | None = None
    ) -> list[str]:
        """`<engine> exec` of `command` in the agent container, attached to this terminal (`-i`, `-t` with a TTY).
        `env_names` are forwarded by name: their values come from the engine's environment, never argv."""
        argv = self.engine.argv("exec", "--interactive")
        if tty:
            argv.append("--tty")
        if workdir:
            argv.append(f"--workdir={workdir}")
        argv += [f"--env={name}" for name in env_names]
        return [*argv, self.name, *command]

    def inspect(self) -> dict[str, Any]:
        return self.engine.inspect(self.name)

    def running(self) -> bool:
        return self.engine.running(self.name)

    def logs(self, container: str | None = None) -> str:
        result = self.engine.run(["logs", container or self.name], check=False)
        return result.out + result.err

    def remove(self) -> None:
        """Remove everything the start created, in reverse order. The state directory (the proxy's log) stays."""
        if self.removed or self.keep:
            return
        for argv in reversed(self.undo):
            self.engine.run(argv, check=False)
        self.undo.clear()
        self.removed = True
        hand_back(self.plan.request.state_dir)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hand_back(state_dir: Path) -> None:
    """Give the proxy's log (written as the container's `proxy` user) to the state directory's owner."""
    if not state_dir.is_dir():
        return
    owner = state_dir.stat()
    for path in [state_dir, *state_dir.rglob("*")]:
        try:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
        except OSError:
            pass


# ---------------------------------------------------------------- starting
def warn_stderr(message: str) -> None:
    print(f"agent-sandbox: warning: {message}", file=sys.stderr, flush=True)


def skipped_mount_warnings(
    profile: Profile, host_env: Mapping[str, str], exists: Callable[[str], bool] = os.path.exists
) -> tuple[tuple[str, ...], list[str]]:
    """The targets of tier mounts whose host source is missing, and a warning for each: such a mount is left out
    (trusted's ~/.gitconfig and ~/.ssh on a host that has none), not a failed start."""
    targets, warnings = [], []
    for mount, source in missing_mounts(profile, host_env, exists):
        targets.append(mount.target)
        warnings.append(
            f"profile {profile.name}: {source} does not exist on this host: not mounting it at {mount.target}"
        )
    return tuple(targets), warnings


def make_state_dir(path: Path) -> None:
    """Owner-only all the way: the state root and the sandbox's own directory (it holds the proxy's log)."""
    for directory in (path.parent.parent, path.parent, path):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)


def prepare_proxy_files(plan: Plan, subnet: str) -> None:
    """squid.conf and the log directory, owner-only and owned by the proxy's user (Squid runs as it, without any
    capability): Squid can read and write them, nobody else on the host can."""
    atomic_write(plan.squid_conf, plan.squid_conf_text(subnet), mode=0o600)
    plan.log_dir.mkdir(mode=0o700, exist_ok=True)
    plan.log_dir.chmod(0o700)
    if os.geteuid() == 0:
        for path in [plan.squid_conf, plan.log_dir, *plan.log_dir.iterdir()]:
            os.chown(path, PROXY_UID, PROXY_UID)


def ensure_outbound_network(engine: Engine, name: str) -> None:
    """The routed network the proxies join: created when missing; an internal one would give no egress at all."""
    found = engine.run(["network", "inspect", name], check=False)
    if found.ok:
        info = json.loads(found.out)
        if is_internal(info[0] if isinstance(info, list) and info else info):
            raise EnvironmentProblem(
                f"network {name} is internal: the egress proxy needs a routed network there "
                f"(remove it: {engine.name} network rm {name})"
            )
        return
    result = engine.run(["network", "create", name], check=False)
    if not result.ok and not engine.network_exists(name):  # (created concurrently by another start: fine)
        raise CommandFailed(f"cannot create network {name}: {result.err.strip()}")


def address_on(engine: Engine, container: str, network: str, role: str = "container") -> str:
    """The container's address on `network`; CommandFailed (with its log) if it is not running."""
    info = engine.inspect(container)
    if not (info.get("State") or {}).get("Running"):
        logs = engine.run(["logs", container], check=False)
        raise CommandFailed(f"the {role} {container} stopped: {(logs.out + logs.err).strip()[-500:]}")
    address = ((info.get("NetworkSettings", {}).get("Networks", {}) or {}).get(network) or {}).get("IPAddress")
    if not address:
        raise CommandFailed(f"{container} has no address on {network}")
    return str(address)


def check_start(engine: Engine, request: Request, *, engine_checked: bool = False) -> None:
    """What the user can get wrong, before anything is created (exit 2 for input, 3 for the environment).
    `engine_checked`: the caller has asked the engine already (the image, the proxy image, the names of the
    containers and network: spawn does, before it makes a worktree)."""
    check_name(request.name)
    if not request.workspace.is_dir():
        raise InputError(f"{request.workspace}: the workspace must be an existing directory")
    if request.ca_bundle is not None and not request.ca_bundle.is_file():
        raise InputError(f"{request.ca_bundle}: no such CA bundle file")
    if engine_checked:
        return
    plan = Plan(request)
    images = [request.image] + ([request.proxy_image] if request.proxied else [])
    if not engine.run(["image", "inspect", "--format", "{{.Id}}", *images], check=False).ok:  # one call when all exist
        if not engine.image_exists(request.image):
            raise EnvironmentProblem(
                f"image {request.image} is not in {engine.name}'s storage: build or load it "
                "first (`agent-sandbox build`)"
            )
        check_proxy_image(engine, request.proxy_image)
    taken = engine.existing(
        containers=[c for c in (plan.container, plan.proxy) if c], networks=[plan.network] if plan.network else []
    )
    if taken:
        name = sorted(taken)[0]
        raise InputError(
            f"{name} exists already (a container or network of that name): choose another --name, or "
            f"remove it (agent-sandbox rm {request.name})"
        )


def check_proxy_image(engine: Engine, ref: str = egress.PROXY_IMAGE) -> None:
    """The egress proxy image is in the engine's storage (EnvironmentProblem, saying how to build it, if not)."""
    if not engine.image_exists(ref):
        raise EnvironmentProblem(
            f"the egress proxy image {ref} is not in {engine.name}'s storage: build it "
            f"(`agent-sandbox build {egress.PROXY_IMAGE_NAME} --backend debian`)"
        )


def start_sandbox(
    image: str,
    profile: Profile,
    *,
    engine: Engine | str,
    workspace: Path,
    name: str | None = None,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    adjust: Callable[[list[str]], list[str]] | None = None,
    state_dir: Path | None = None,
    ca_bundle: Path | None = None,
    proxy_hosts: Sequence[tuple[str, str]] = (),
    outbound_network: str = egress.OUTBOUND_NETWORK,
    proxy_image: str | None = None,
    command: Sequence[str] | None = None,
    extra_env: Sequence[tuple[str, str]] = (),
    gateway: Sequence[Provider] = (),
    keys: Mapping[str, str] | None = None,
    mounts: Sequence[BindMount] = (),
    own_network: bool = False,
    network_adjust: Callable[[list[str]], list[str]] | None = None,
    proxy_conf_adjust: Callable[[str], str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    on_warning: Callable[[str], None] = warn_stderr,
    engine_checked: bool = False,
) -> Sandbox:
    """Start `image` under `profile` with the tier's run flags and `workspace` as /workspace.

    `host_env` resolves `${localEnv:...}` in the tier's mounts (default: this process's environment). No API key
    reaches the container's configuration: with `gateway`, the proxy holds the providers' `keys` (delivered
    through a pipe into its tmpfs); otherwise pass keys to the processes you exec (Sandbox.exec_argv). With
    `command`, the agent container runs it instead of the keep-alive (and may have exited on return). `mounts` are
    bind mounts besides the tier's (spawn: the repository's git directory); `own_network` gives an open tier
    a network of its own too.
    A tier mount whose host source is missing is left out, told to `on_warning` (default: stderr) and kept in
    `Sandbox.warnings`. Everything is removed again if anything fails on the way.
    """
    eng = as_engine(engine)
    name = name or new_name()
    env = dict(os.environ if host_env is None else host_env)
    skip, warnings = skipped_mount_warnings(profile, env)
    request = Request(
        image,
        profile,
        Path(workspace).absolute(),
        name,
        eng.name,
        state_dir or sandbox_state_dir(name, env),
        uid,
        gid,
        host_env=env,
        proxy_image=proxy_image or egress.PROXY_IMAGE,
        outbound_network=outbound_network,
        ca_bundle=ca_bundle,
        proxy_hosts=tuple(proxy_hosts),
        env=tuple(extra_env),
        gateway=tuple(gateway),
        skip_mounts=skip,
        mounts=tuple(mounts),
        own_network=own_network,
        adjust=adjust,
        network_adjust=network_adjust,
        proxy_conf_adjust=proxy_conf_adjust,
    )
    check_start(eng, request, engine_checked=engine_checked)
    keys_file(request.gateway, keys or {})  # every key present and passable, before anything is created
    plan = Plan(request)
    box = Sandbox(eng, plan, warnings=warnings)
    for message in warnings:
        on_warning(message)
    try:
        make_state_dir(request.state_dir)
        if plan.seccomp_text is not None:
            atomic_write(plan.seccomp_file, plan.seccomp_text, mode=0o600)
        if plan.network is not None:
            eng.run(plan.network_create())
            box.undo.append(["network", "rm", plan.network])
        if plan.network is not None and plan.proxy is not None:
            ensure_outbound_network(eng, request.outbound_network)
            prepare_proxy_files(plan, eng.network_subnets(plan.network)[0])
            box.undo.append(eng.remove_container_argv(plan.proxy))
            eng.run(plan.proxy_run())
            if request.gateway:
                eng.run(plan.keys_delivery(), stdin=keys_file(request.gateway, keys or {}))
            eng.run(plan.proxy_connect())
            box.proxy_address = address_on(eng, plan.proxy, plan.network, "egress proxy")
        box.undo.append(eng.remove_container_argv(plan.container))
        eng.run(plan.agent_run(box.proxy_address, command=command), env=engine_env({}))
        if command is None and plan.proxy is not None:
            wait_for_proxy(box, ready_timeout)  # an exec in the agent: it runs, and it reaches its proxy
    except BaseException:
        box.remove()
        raise
    return box


# Run inside the agent container (bash, no other tool): until the proxy answers a request for its readiness name
# (refused, and never logged: compilers/squid.py), which proves Squid listens *and* the agent reaches it.
PROXY_PROBE = (
    f"until exec 3<>/dev/tcp/{egress.PROXY_HOST}/{egress.PROXY_PORT} "
    f"&& printf 'GET http://{egress.READINESS_NAME}/ HTTP/1.0\\r\\n\\r\\n' >&3 "
    "&& read -r status <&3 && [[ $status == HTTP/*' 403 '* ]]; do exec 3<&-; sleep 0.05; done 2>/dev/null"
)


def wait_for_proxy(box: Sandbox, timeout: float) -> None:
    """Until the agent reaches its proxy and Squid answers."""
    proxy = box.plan.proxy
    assert proxy is not None
    code, _, err = box.exec("timeout", f"{timeout:g}", "bash", "-c", PROXY_PROBE, timeout=timeout + 15)
    if code != 0:
        proxy_unreachable(box, err)


def proxy_unreachable(box: Sandbox, err: str) -> None:
    """The readiness probe failed: say why (Squid down, or traffic inside the sandbox network dropped)."""
    proxy = box.plan.proxy
    assert proxy is not None
    listening = "Accepting SSL bumped HTTP Socket connections" in box.logs(proxy)
    why = (
        "Squid listens but the agent cannot reach it: traffic inside the sandbox network is dropped (on a host "
        "where dockerd set the FORWARD policy to DROP, run scripts/setup-host.sh; see docs/egress.md)"
        if listening
        else f"Squid did not start: {box.logs(proxy).strip()[-400:]}"
    )
    raise EnvironmentProblem(f"the egress proxy of {box.name} is not reachable: {why} {err.strip()[-200:]}")


def release(box: Sandbox, keys: Mapping[str, str], *, ready_timeout: float = READY_TIMEOUT) -> None:
    """Open the gate of an agent started behind one (spawn.gated): once it reaches its proxy (proxied tiers), the
    keys that go inside and the go, through a pipe into its /tmp (never its configuration or a command line).
    One exec does both: the probe, then the gate."""
    from .spawn import PROBE_FAILED, gate_release, gate_text

    probe = PROXY_PROBE if box.plan.proxy is not None else None
    argv = gate_release(box.name, probe, ready_timeout)
    result = box.engine.run(argv, stdin=gate_text(keys), check=False, timeout=ready_timeout + 15)
    if result.code == PROBE_FAILED:
        proxy_unreachable(box, result.err)
    if not result.ok:
        raise CommandFailed(f"cannot release {box.name}: {(result.err or result.out).strip()[-300:]}")


def run_once(
    image: str,
    profile: Profile,
    command: Sequence[str],
    *,
    engine: Engine | str,
    workspace: Path,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    adjust: Callable[[list[str]], list[str]] | None = None,
    timeout: float = 120,
) -> tuple[int, dict[str, Any], str]:
    """Run `command` in a fresh sandbox with the tier's flags (`command[0]` as the agent container's entrypoint).

    Returns its exit code, its final inspect `State` and its output; the sandbox is removed whatever happens.
    """
    with start_sandbox(
        image,
        profile,
        engine=engine,
        workspace=workspace,
        host_env=host_env,
        uid=uid,
        gid=gid,
        adjust=adjust,
        command=command,
    ) as box:
        result = box.engine.run(["wait", box.name], timeout=timeout, check=False)
        if not result.ok:
            raise CommandFailed(f"`{box.engine.name} wait {box.name}` failed")
        state = box.inspect().get("State", {})
        return int(result.out.strip().splitlines()[-1]), state, box.logs()


def attach(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> int:
    """Run an engine command attached to this terminal (stdin, stdout, stderr inherited); its exit status."""
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd)
    try:
        return proc.wait()
    except BaseException:
        from .process import stop

        stop(proc, grace=5)
        raise


# ---------------------------------------------------------------- finding what sandboxes left
def leftovers(engine: Engine, name: str | None = None) -> dict[str, list[str]]:
    """Containers and networks labelled as a sandbox's (one, or any): what `remove_leftovers` would take."""
    selector = f"label={SANDBOX_LABEL}" + (f"={name}" if name else "")
    containers = engine.run(["ps", "--all", "--filter", selector, "--format", "{{.Names}}"], check=False).out
    networks = engine.run(["network", "ls", "--filter", selector, "--format", "{{.Name}}"], check=False).out
    return {"containers": containers.split(), "networks": networks.split()}


def remove_leftovers(engine: Engine, name: str | None = None) -> dict[str, list[str]]:
    found = leftovers(engine, name)
    for container in found["containers"]:
        engine.remove_container(container)
    for network in found["networks"]:
        engine.remove_network(network)
    return found


# ---------------------------------------------------------------- for tests of weakened sandboxes
def replace_flag(flags: list[str], prefix: str, value: str | None) -> list[str]:
    """`flags` with every flag starting with `prefix` removed, and `value` appended if given (for tests)."""
    out = [f for f in flags if not f.startswith(prefix)]
    return out + ([value] if value is not None else [])


def without_flags(*prefixes: str) -> Callable[[list[str]], list[str]]:
    """An `adjust` that drops the flags starting with any of `prefixes` (a deliberately weakened container)."""

    def adjust(flags: list[str]) -> list[str]:
        return [f for f in flags if not f.startswith(prefixes)]

    return adjust
