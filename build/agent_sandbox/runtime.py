"""Start and stop a sandbox container on podman or docker, with exactly the tier's compiled run flags.

`sandbox_command` is pure: it renders the full `<engine> run` command from `compilers.runargs.run_args`, so what
the conformance suite starts is what a user's devcontainer gets. `start_sandbox` runs it through plumbum and hands
back a `Sandbox` (a context manager) that removes the container again, also when the start itself fails.

Proxied tiers join the network `agent-sandbox-egress`. The egress proxy is not shipped yet, so when that network is
missing the runtime creates it `--internal` (no route out): a proxied tier then has no egress at all and fails
closed rather than open. An existing `agent-sandbox-egress` that is not internal is refused: it would make a
proxied tier open.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import attrs
from plumbum import ProcessTimedOut, local
from plumbum.commands.processes import CommandNotFound

from . import egress
from .compilers.runargs import API_KEY_VARS, run_args
from .errors import CommandFailed, EnvironmentProblem, InputError
from .model import NetworkMode, Profile

ENGINES = ("podman", "docker")

# What keeps a sandbox alive: the Dev Containers CLI overrides the entrypoint the same way (a shell that waits
# and exits on SIGTERM), so the container's PID 1 is a shell started with the tier's flags, not an image daemon.
KEEPALIVE_ENTRYPOINT = "/bin/sh"
KEEPALIVE_COMMAND = ("-c", "trap 'exit 0' TERM INT; while sleep 1000 & wait $!; do :; done")

ENGINE_TIMEOUT = 120  # seconds for one engine command (a run may have to set up a network)


# ---------------------------------------------------------------- engines
def _which(name: str) -> Any | None:
    try:
        return local[name]
    except CommandNotFound:
        return None


def engine_answers(engine: str, *, timeout: float = 15) -> bool:
    """True if `engine` is installed and its daemon/service answers (`<engine> info`)."""
    cmd = _which(engine)
    if cmd is None:
        return False
    try:
        code, _, _ = cmd.run(["info", "--format", "{{json .}}"], retcode=None, timeout=timeout)
    except ProcessTimedOut:
        return False
    return bool(code == 0)


def detect_engine(requested: str | None = None) -> str:
    """The engine to use: `requested` if it answers, else podman if it answers, else docker if its daemon answers."""
    if requested is not None:
        if requested not in ENGINES:
            raise InputError(f"{requested!r}: the engine is podman or docker")
        if not engine_answers(requested):
            hint = "is dockerd running (or DOCKER_HOST set)?" if requested == "docker" else "is podman installed?"
            raise EnvironmentProblem(f"{requested} does not answer `{requested} info`: {hint}")
        return requested
    for engine in ENGINES:
        if engine_answers(engine):
            return engine
    raise EnvironmentProblem("no container engine answers: install podman, or start dockerd (see docs/conformance.md)")


@functools.cache
def engine_cwd() -> str:
    """A private empty directory that engine commands run in, removed when this process exits.

    podman's conmon (which outlives `podman run`) inherits the working directory and creates an empty file `oom`
    there when a container is OOM-killed: never in the caller's directory (a checkout). Once the directory is
    gone, conmon's later attempts fail harmlessly.
    """
    path = tempfile.mkdtemp(prefix="agent-sandbox-engine-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _engine(engine: str) -> Any:
    cmd = _which(engine)
    if cmd is None:
        raise EnvironmentProblem(f"{engine} is not installed")
    return cmd


def run_engine(
    engine: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = ENGINE_TIMEOUT,
    check: bool = True,
) -> tuple[int, str, str]:
    """Run `<engine> args`; raise CommandFailed (with the engine's message) on a non-zero exit when `check`."""
    cmd = _engine(engine)
    try:
        with _process_env(env):
            code, out, err = cmd.run(list(args), retcode=None, timeout=timeout, cwd=engine_cwd())
    except ProcessTimedOut:
        raise CommandFailed(f"`{engine} {' '.join(args[:3])} ...` did not finish in {timeout:g} s") from None
    if check and code != 0:
        message = (err or out).strip().splitlines()
        raise CommandFailed(f"`{engine} {' '.join(args[:2])}` failed ({code}): {message[-1] if message else ''}")
    return code, out, err


@contextmanager
def _process_env(env: Mapping[str, str] | None) -> Iterator[None]:
    """Run the engine with exactly `env` (plumbum otherwise merges with this process's environment)."""
    if env is None:
        yield
        return
    with local.env():
        local.env.clear()
        local.env.update(dict(env))
        yield


def image_exists(engine: str, image: str) -> bool:
    code, _, _ = run_engine(engine, ["image", "inspect", image], check=False)
    return code == 0


def inspect(engine: str, what: str, *, kind: str = "container") -> dict[str, Any]:
    """`<engine> <kind> inspect` as a dict (the first element of the JSON array)."""
    _, out, _ = run_engine(engine, [kind, "inspect", what])
    data = json.loads(out)
    first = data[0] if isinstance(data, list) and data else data
    if not isinstance(first, dict):
        raise CommandFailed(f"`{engine} {kind} inspect {what}` did not answer a JSON object")
    return first


# ---------------------------------------------------------------- networks
def network_exists(engine: str, name: str) -> bool:
    code, _, _ = run_engine(engine, ["network", "inspect", name], check=False)
    return code == 0


def is_internal(info: Mapping[str, Any]) -> bool:
    """Whether a `network inspect` result is an internal network (podman 4 reports `internal`, docker and
    podman's docker API `Internal`)."""
    return bool(info.get("internal", info.get("Internal", False)))


def network_is_internal(engine: str, name: str) -> bool:
    return is_internal(inspect(engine, name, kind="network"))


def _refuse_open_egress_network(engine: str) -> None:
    """An existing egress network with a route out would make every proxied tier open."""
    if not network_is_internal(engine, egress.EGRESS_NETWORK):
        name = egress.EGRESS_NETWORK
        raise EnvironmentProblem(f"network {name} exists but is not internal: remove it ({engine} network rm {name})")


def ensure_egress_network(engine: str) -> bool:
    """Make sure `agent-sandbox-egress` exists and is internal; create it `--internal` when missing. True if
    created here. An existing internal network is left as it is (once the egress proxy ships, it owns this
    network); a non-internal one is refused with EnvironmentProblem.
    """
    if network_exists(engine, egress.EGRESS_NETWORK):
        _refuse_open_egress_network(engine)
        return False
    code, _, err = run_engine(engine, ["network", "create", "--internal", egress.EGRESS_NETWORK], check=False)
    if code != 0:
        if network_exists(engine, egress.EGRESS_NETWORK):  # created concurrently by another run
            _refuse_open_egress_network(engine)
            return False
        raise CommandFailed(f"cannot create network {egress.EGRESS_NETWORK}: {err.strip()}")
    return True


# ---------------------------------------------------------------- the run command (pure)
def sandbox_command(
    engine: str,
    image: str,
    profile: Profile,
    *,
    workspace: Path | str,
    name: str,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    detach: bool = True,
    command: Sequence[str] | None = None,
    adjust: Callable[[list[str]], list[str]] | None = None,
) -> list[str]:
    """The complete `<engine> run ...` argv for `image` under `profile` (pure).

    The flags are exactly `run_args(profile, workspace=..., host_env=...)`; around them come only the container
    name, `--detach` and the entrypoint: the keep-alive shell, or `command[0]` when a `command` is given (its
    arguments follow the image). `adjust` rewrites the tier's flags; it exists for tests that must run a
    deliberately weakened or tightened container (say so where it is used).
    """
    if engine not in ENGINES:
        raise InputError(f"{engine!r}: the engine is podman or docker")
    flags = run_args(profile, workspace=str(workspace), host_env=dict(host_env or {}), uid=uid, gid=gid)
    if adjust is not None:
        flags = adjust(list(flags))
    argv = [engine, "run"]
    if detach:
        argv.append("--detach")
    argv.append(f"--name={name}")
    argv += flags
    if command is None:
        argv += [f"--entrypoint={KEEPALIVE_ENTRYPOINT}", image, *KEEPALIVE_COMMAND]
    else:
        if not command:
            raise InputError("an empty command")
        argv += [f"--entrypoint={command[0]}", image, *command[1:]]
    return argv


def engine_env(host_env: Mapping[str, str] | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run the engine with: `base` (this process's), with the API-key variables that the
    tier forwards by name (`--env=NAME`) taken from `host_env` only, so a caller decides what reaches the box."""
    env = dict(os.environ if base is None else base)
    if host_env is None:
        return env
    for var in API_KEY_VARS:
        env.pop(var, None)
        if var in host_env:
            env[var] = host_env[var]
    return env


def remove_command(engine: str, name: str) -> list[str]:
    """Force-remove a container now, with its anonymous volumes (a tier's `scratch` directories: without
    `--volumes` both engines keep them on the host). `--time=0`: podman would otherwise wait 10 s for a PID 1
    that ignores SIGTERM."""
    if engine == "podman":
        return [engine, "rm", "--force", "--volumes", "--time=0", name]
    return [engine, "rm", "--force", "--volumes", name]


# ---------------------------------------------------------------- the sandbox
@attrs.define
class Sandbox:
    """A running sandbox container. Use as a context manager, or call `remove()`."""

    engine: str
    name: str
    image: str
    profile: Profile
    workspace: Path
    argv: list[str]
    container_id: str = ""
    removed: bool = False

    @property
    def host_spec(self) -> str:
        """The pytest-testinfra host specification (`podman://NAME`, `docker://NAME`)."""
        return f"{self.engine}://{self.name}"

    def exec(self, *command: str, timeout: float = 60, user: str | None = None) -> tuple[int, str, str]:
        args = ["exec"] + (["--user", user] if user else []) + [self.name, *command]
        return run_engine(self.engine, args, timeout=timeout, check=False)

    def inspect(self) -> dict[str, Any]:
        return inspect(self.engine, self.name)

    def running(self) -> bool:
        code, out, _ = run_engine(self.engine, ["inspect", "--format", "{{.State.Running}}", self.name], check=False)
        return code == 0 and out.strip() == "true"

    def logs(self) -> str:
        _, out, err = run_engine(self.engine, ["logs", self.name], check=False)
        return out + err

    def remove(self) -> None:
        if self.removed:
            return
        argv = remove_command(self.engine, self.name)
        run_engine(self.engine, argv[1:], check=False)
        self.removed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def new_name(prefix: str = "agent-sandbox") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start_sandbox(
    image: str,
    profile: Profile,
    *,
    engine: str,
    workspace: Path,
    name: str | None = None,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    adjust: Callable[[list[str]], list[str]] | None = None,
    ready_timeout: float = 30,
) -> Sandbox:
    """Start `image` under `profile` with the tier's run flags and `workspace` as /workspace.

    `host_env` resolves `${localEnv:...}` in the tier's mounts and supplies the forwarded API-key variables
    (default: this process's environment). The container is removed again if anything fails after `run`.
    """
    workspace = Path(workspace).absolute()  # the engine runs elsewhere (engine_cwd)
    if not workspace.is_dir():
        raise InputError(f"{workspace}: the workspace must be an existing directory")
    if not image_exists(engine, image):
        raise EnvironmentProblem(f"image {image} is not in {engine}'s storage: build or load it first")
    if profile.network.mode is NetworkMode.PROXIED:
        ensure_egress_network(engine)
    name = name or new_name()
    env = dict(os.environ if host_env is None else host_env)
    argv = sandbox_command(engine, image, profile, workspace=workspace, name=name, host_env=env, uid=uid, gid=gid,
                           adjust=adjust)
    box = Sandbox(engine, name, image, profile, workspace, argv)
    try:
        _, out, _ = run_engine(engine, argv[1:], env=engine_env(env))
        box.container_id = out.strip().splitlines()[-1] if out.strip() else ""
        deadline = time.monotonic() + ready_timeout
        while not box.running():
            if time.monotonic() > deadline:
                raise CommandFailed(f"container {name} did not start: {box.logs().strip()[-500:]}")
            time.sleep(0.2)
    except BaseException:
        box.remove()
        raise
    return box


def run_once(
    image: str,
    profile: Profile,
    command: Sequence[str],
    *,
    engine: str,
    workspace: Path,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    adjust: Callable[[list[str]], list[str]] | None = None,
    timeout: float = 120,
) -> tuple[int, dict[str, Any], str]:
    """Run `command` in a fresh container with the tier's flags (`command[0]` as its entrypoint).

    Returns its exit code, its final inspect `State` and its output; the container is removed whatever happens.
    """
    if profile.network.mode is NetworkMode.PROXIED:
        ensure_egress_network(engine)
    workspace = Path(workspace).absolute()  # the engine runs elsewhere (engine_cwd)
    name = new_name("agent-sandbox-once")
    env = dict(os.environ if host_env is None else host_env)
    argv = sandbox_command(engine, image, profile, workspace=workspace, name=name, host_env=env, uid=uid, gid=gid,
                           adjust=adjust, command=command)
    try:
        run_engine(engine, argv[1:], env=engine_env(env))
        code, out, _ = run_engine(engine, ["wait", name], timeout=timeout, check=False)
        if code != 0:
            raise CommandFailed(f"`{engine} wait {name}` failed")
        state = inspect(engine, name).get("State", {})
        _, logs, errs = run_engine(engine, ["logs", name], check=False)
        return int(out.strip().splitlines()[-1]), state, logs + errs
    finally:
        run_engine(engine, remove_command(engine, name)[1:], check=False)


def replace_flag(flags: list[str], prefix: str, value: str | None) -> list[str]:
    """`flags` with every flag starting with `prefix` removed, and `value` appended if given (for tests)."""
    out = [f for f in flags if not f.startswith(prefix)]
    return out + ([value] if value is not None else [])


def without_flags(*prefixes: str) -> Callable[[list[str]], list[str]]:
    """An `adjust` that drops the flags starting with any of `prefixes` (a deliberately weakened container)."""

    def adjust(flags: list[str]) -> list[str]:
        return [f for f in flags if not f.startswith(prefixes)]

    return adjust

