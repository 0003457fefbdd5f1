"""The container engine (podman or docker): which one, how its commands run, and the queries everyone needs.

The one place that knows the engines. `detect_engine` picks one (the request, AGENT_SANDBOX_ENGINE, else podman,
else a docker whose daemon answers); an `Engine` runs its commands through process.run in a private working
directory and answers the questions the builders, the runtime and the conformance suite ask (does this image
exist, inspect that container, remove this network). What differs between podman and docker is said here once.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from . import process
from .errors import CommandFailed, EnvironmentProblem, InputError
from .process import LineSink, Result, ignore_line

ENGINES = ("podman", "docker")
ENGINE_TIMEOUT = 120  # seconds for one engine command (a run may have to set up a network)


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


def is_internal(info: Mapping[str, Any]) -> bool:
    """Whether a `network inspect` result is an internal network (podman 4 reports `internal`, docker and
    podman's docker API `Internal`)."""
    return bool(info.get("internal", info.get("Internal", False)))


@attrs.frozen
class Engine:
    """podman or docker, by its executable."""

    name: str
    exe: str

    # ------------------------------------------------------------ running commands
    def argv(self, *args: str) -> list[str]:
        return [self.exe, *args]

    def run(
        self,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = ENGINE_TIMEOUT,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> Result:
        """`<engine> args` to completion; with `check`, a failure is CommandFailed with the engine's message."""
        return process.run(self.argv(*args), check=check, timeout=timeout, env=env, cwd=engine_cwd(), stdin=stdin)

    def stream(self, args: Sequence[str], *, on_line: LineSink = ignore_line) -> str:
        return process.stream(self.argv(*args), on_line=on_line, cwd=engine_cwd())

    def answers(self, *, timeout: float = 15) -> bool:
        """True if the engine (for docker: its daemon) answers `version` (`info` costs podman 0.2 s more)."""
        try:
            return self.run(["version", "--format", "{{json .}}"], check=False, timeout=timeout).ok
        except CommandFailed:  # timed out
            return False

    # ------------------------------------------------------------ queries
    def inspect(self, what: str, *, kind: str = "container") -> dict[str, Any]:
        """`<engine> <kind> inspect` as a dict (the first element of the JSON array)."""
        data = json.loads(self.run([kind, "inspect", what]).out)
        first = data[0] if isinstance(data, list) and data else data
        if not isinstance(first, dict):
            raise CommandFailed(f"`{self.name} {kind} inspect {what}` did not answer a JSON object")
        return first

    def image_id(self, ref: str) -> str | None:
        result = self.run(["image", "inspect", "--format", "{{.Id}}", ref], check=False)
        return result.out.strip() if result.ok and result.out.strip() else None

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_labels(self, ref: str) -> dict[str, str]:
        info = self.inspect(ref, kind="image")
        return dict((info.get("Config") or {}).get("Labels") or info.get("Labels") or {})

    def image_size(self, ref: str) -> int:
        return int(self.inspect(ref, kind="image").get("Size") or 0)

    def network_subnets(self, name: str) -> tuple[str, ...]:
        """The IPv4 subnets of a network (podman 4: `subnets`; docker: `IPAM.Config`)."""
        info = self.inspect(name, kind="network")
        found = [s.get("subnet", "") for s in info.get("subnets") or []]
        found += [c.get("Subnet", "") for c in (info.get("IPAM") or {}).get("Config") or []]
        return tuple(s for s in found if s and ":" not in s)

    def network_exists(self, name: str) -> bool:
        return self.run(["network", "inspect", name], check=False).ok

    def existing(self, containers: Sequence[str] = (), networks: Sequence[str] = ()) -> set[str]:
        """Which of these containers and networks exist (two commands, whatever their number)."""
        found: set[str] = set()
        if containers:
            names = self.run(["ps", "--all", "--format", "{{.Names}}"], check=False).out.split()
            found |= set(containers) & set(names)
        if networks:
            names = self.run(["network", "ls", "--format", "{{.Name}}"], check=False).out.split()
            found |= set(networks) & set(names)
        return found

    def container_exists(self, name: str) -> bool:
        return self.run(["container", "inspect", name], check=False).ok

    def running(self, name: str) -> bool:
        result = self.run(["inspect", "--format", "{{.State.Running}}", name], check=False)
        return result.ok and result.out.strip() == "true"

    def compose_command(self) -> list[str]:
        """The Compose tool for this engine: podman-compose for podman; for docker the `docker compose` plugin where
        it answers, else docker-compose v1 (the one Debian ships)."""
        if self.name == "podman":
            return [process.require("podman-compose", "pip install podman-compose; it is in the [test] extra")]
        if self.run(["compose", "version"], check=False).ok:
            return [self.exe, "compose"]
        return [process.require("docker-compose", "apt-get install docker-compose, or the docker compose plugin")]

    # ------------------------------------------------------------ removal (never fails: used when cleaning up)
    def remove_container_argv(self, name: str) -> list[str]:
        """Force-remove a container now, with its anonymous volumes (a tier's `scratch` directories: without
        `--volumes` both engines keep them on the host). `--time=0`: podman would otherwise wait 10 s for a PID 1
        that ignores SIGTERM."""
        if self.name == "podman":
            return ["rm", "--force", "--volumes", "--time=0", name]
        return ["rm", "--force", "--volumes", name]

    def remove_container(self, name: str) -> None:
        self.run(self.remove_container_argv(name), check=False)

    def remove_network(self, name: str) -> None:
        self.run(["network", "rm", name], check=False)

    def remove_image(self, ref: str) -> None:
        self.run(["rmi", ref], check=False)

    def tag(self, src: str, dst: str) -> None:
        self.run(["tag", src, dst])


def engine_named(name: str) -> Engine:
    """The engine called `name` if it is installed (no check that it answers)."""
    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r}: choose podman or docker")
    exe = process.which(name)
    if not exe:
        raise EnvironmentProblem(f"{name} is not installed (run scripts/setup-host.sh)")
    return Engine(name, exe)


def installed_engine(requested: str | None = None, *, env: Mapping[str, str] | None = None) -> Engine:
    """The engine `detect_engine` would try first, found by its executable alone (runs nothing: dry runs)."""
    env = os.environ if env is None else env
    wanted = requested or env.get("AGENT_SANDBOX_ENGINE") or ""
    if wanted:
        return engine_named(wanted)
    for name in ENGINES:
        exe = process.which(name)
        if exe:
            return Engine(name, exe)
    raise EnvironmentProblem("no container engine: install podman or docker (scripts/setup-host.sh)")


def detect_engine(requested: str | None = None, *, env: Mapping[str, str] | None = None) -> Engine:
    """The engine to use: `requested`, else AGENT_SANDBOX_ENGINE, else podman, else docker — one that answers.

    A named engine that does not answer is an EnvironmentProblem (exit 3), never a silent switch to the other.
    """
    env = os.environ if env is None else env
    wanted = requested or env.get("AGENT_SANDBOX_ENGINE") or ""
    if wanted:
        engine = engine_named(wanted)
        if not engine.answers():
            hint = "is dockerd running (or DOCKER_HOST set)?" if wanted == "docker" else "is podman configured?"
            raise EnvironmentProblem(f"{wanted} does not answer `{wanted} info`: {hint}")
        return engine
    for name in ENGINES:
        exe = process.which(name)
        if exe and Engine(name, exe).answers():
            return Engine(name, exe)
    raise EnvironmentProblem("no container engine answers: install podman, or start dockerd (scripts/setup-host.sh)")
