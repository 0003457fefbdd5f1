"""The side-effect edge of the Debian backend: mmdebstrap, podman (+ buildah) and docker, through plumbum.

`Engine` (abstract) holds what podman and docker share (image inspect, import, tag, rmi, run --rm); `Podman`
makes layers with buildah (same storage), `Docker` with run + commit and build. Every failing command raises
CommandFailed with its last stderr lines; an interrupted command is stopped before anything is cleaned up.
"""

from __future__ import annotations

import abc
import collections
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from plumbum import local
from plumbum.commands.processes import BY_TYPE, iter_lines

from ..errors import CommandFailed, EnvironmentProblem, InputError
from ..runtime import ENGINES, engine_answers
from .debian_plan import containerfile

TAIL = 15

LineSink = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def run_streaming(argv: Sequence[str], *, on_line: LineSink = _ignore) -> str:
    """Run argv, feeding every output line to on_line; return stdout. Raises CommandFailed with stderr's tail."""
    cmd = local[argv[0]][list(argv[1:])]
    stdout: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    with open(os.devnull, "rb") as devnull:
        proc = cmd.popen(stdin=devnull)
        try:
            for fd, line in iter_lines(proc, retcode=None, buffer_size=0, mode=BY_TYPE):  # type: ignore[call-overload]
                (stdout if fd == 1 else tail).append(line)
                if line.strip():
                    on_line(line)
            proc.wait()
        except BaseException:  # interrupted (or a failing line sink): stop the command before cleaning up
            stop(proc)
            raise
    if proc.returncode != 0:
        raise command_failed(argv, proc.returncode, list(tail) or stdout[-TAIL:])
    return "\n".join(stdout)


def stop(proc: Any, grace: float = 15.0) -> None:
    """SIGTERM first: `buildah run` and `podman`/`docker run` pass it on and take their container down;
    SIGKILL of the client alone would leave the container's processes running."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def command_failed(argv: Sequence[str], code: int | None, tail: Iterable[str]) -> CommandFailed:
    shown = " ".join(argv[:4]) + (" ..." if len(argv) > 4 else "")
    lines = [line for line in tail if line.strip()]
    detail = ("\n  " + "\n  ".join(lines)) if lines else ""
    return CommandFailed(f"`{shown}` failed (exit {code}){detail}")


def run_quiet(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run argv to completion; never raises for a non-zero exit."""
    code, out, err = local[argv[0]][list(argv[1:])].run(retcode=None)
    return code, out, err


def run_checked(argv: Sequence[str]) -> str:
    code, out, err = run_quiet(argv)
    if code != 0:
        raise command_failed(argv, code, (err or out).splitlines()[-TAIL:])
    return out


# ------------------------------------------------------------------ engines
Labels = Mapping[str, str]
LabelsFrom = Callable[[str], Labels]


@attrs.frozen
class Engine(abc.ABC):
    """Where images live: podman or docker, by its executable. The subclasses know how to make layers."""

    name: str
    exe: str

    def cmd(self, *args: str) -> list[str]:
        return [self.exe, *args]

    def image_id(self, ref: str) -> str | None:
        code, out, _ = run_quiet(self.cmd("image", "inspect", "--format", "{{.Id}}", ref))
        return out.strip() if code == 0 and out.strip() else None

    def inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(run_checked(self.cmd("image", "inspect", ref)))
        info = data[0] if isinstance(data, list) and data else data
        if not isinstance(info, dict):
            raise CommandFailed(f"`{self.name} image inspect {ref}` printed no JSON object")
        return info

    def labels(self, ref: str) -> dict[str, str]:
        info = self.inspect(ref)
        return dict((info.get("Config") or {}).get("Labels") or info.get("Labels") or {})

    def size(self, ref: str) -> int:
        return int(self.inspect(ref).get("Size") or 0)

    def import_rootfs(self, tarball: Path, ref: str, changes: Sequence[str], on_line: LineSink = _ignore) -> None:
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        run_streaming(self.cmd(*args, str(tarball), ref), on_line=on_line)

    def run_once(self, ref: str, argv: Sequence[str], *, user: str | None = None) -> str:
        args = ["run", "--rm", "--network=none"]
        if user:
            args += ["--user", user]
        return run_checked(self.cmd(*args, "--entrypoint", argv[0], ref, *argv[1:]))

    def tag(self, src: str, dst: str) -> None:
        run_checked(self.cmd("tag", src, dst))

    def remove_image(self, ref: str) -> None:
        run_quiet(self.cmd("rmi", ref))

    # layers: implemented per engine
    @abc.abstractmethod
    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = _ignore,
    ) -> str:
        """Run `script` as root (bash) on `parent`, commit the result as `ref` with labels_from(stdout).

        The image config stays the parent's: nothing of the run (its environment, its command) is kept, and
        the script's environment is set inside the script, never with `-e`. Returns the script's stdout.
        The working container never outlives the call; labels_from may raise to refuse the commit.
        """

    @abc.abstractmethod
    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = _ignore,
    ) -> None:
        """`ref` = `parent` + context/etc copied to /etc + labels (literal values) + config."""


@attrs.frozen
class Podman(Engine):
    """podman's store, layers made with buildah (same store): `buildah run` and `buildah config` leave the
    config alone and take labels literally (`podman commit` would keep the run's environment; `podman build
    --label` expands `${...}` in values, and devcontainer.metadata holds `${localEnv:...}`)."""

    buildah: str = "buildah"

    def bcmd(self, *args: str) -> list[str]:
        return [self.buildah, *args]

    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = _ignore,
    ) -> str:
        run_checked(self.bcmd("from", "--pull-never", "--name", container, parent))
        try:
            run = ["run", "--user", "0:0", "--workingdir", "/"]
            for mount in mounts:
                run += ["--volume", mount]
            output = run_streaming(self.bcmd(*run, container, "--", "/bin/bash", "-c", script), on_line=on_line)
            self._commit(container, ref, labels_from(output), {}, on_line)
            return output
        finally:
            run_quiet(self.bcmd("rm", container))

    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = _ignore,
    ) -> None:
        run_checked(self.bcmd("from", "--pull-never", "--name", container, parent))
        try:
            run_checked(self.bcmd("copy", container, str(context / "etc"), "/etc"))
            self._commit(container, ref, labels, config, on_line)
        finally:
            run_quiet(self.bcmd("rm", container))

    def _commit(self, container: str, ref: str, labels: Labels, config: Mapping[str, Any], on_line: LineSink) -> None:
        args = ["config"]
        for name, value in labels.items():
            args += ["--label", f"{name}={value}"]
        for name, value in (config.get("Env") or {}).items():
            args += ["--env", f"{name}={value}"]
        if "User" in config:
            args += ["--user", str(config["User"])]
        if "WorkingDir" in config:
            args += ["--workingdir", config["WorkingDir"]]
        if "Cmd" in config:
            args += ["--cmd", json.dumps(config["Cmd"])]
        if len(args) > 1:
            run_checked(self.bcmd(*args, container))
        run_streaming(self.bcmd("commit", "--format", "docker", "--quiet", container, ref), on_line=on_line)


@attrs.frozen
class Docker(Engine):
    """docker: `run` + `commit` (docker keeps no run environment in the config), `build` for the last layer
    (`docker build --label` values are literal)."""

    def run_and_commit(
        self,
        parent: str,
        ref: str,
        *,
        script: str,
        container: str,
        mounts: Sequence[str] = (),
        labels_from: LabelsFrom = lambda _: {},
        on_line: LineSink = _ignore,
    ) -> str:
        # No --entrypoint: `docker commit` keeps a run's entrypoint even when told `ENTRYPOINT []`.
        info = self.inspect(parent).get("Config") or {}
        if info.get("Entrypoint"):
            raise CommandFailed(f"{parent} has an entrypoint; the agents step expects none")
        run = ["run", "--name", container, "--user", "0:0", "--workdir", "/"]
        for mount in mounts:
            run += ["--volume", mount]
        try:
            output = run_streaming(self.cmd(*run, parent, "/bin/bash", "-c", script), on_line=on_line)
            changes = [
                "CMD " + json.dumps(info.get("Cmd") or ["bash"]),
                f"USER {info.get('User') or 'root'}",
                f"WORKDIR {info.get('WorkingDir') or '/'}",
            ]
            changes += [f"LABEL {name}={json.dumps(value)}" for name, value in labels_from(output).items()]
            commit = ["commit"]
            for change in changes:
                commit += ["--change", change]
            run_streaming(self.cmd(*commit, container, ref), on_line=on_line)
            return output
        finally:
            run_quiet(self.cmd("rm", "--force", container))

    def add_tree(
        self,
        parent: str,
        ref: str,
        *,
        context: Path,
        labels: Labels,
        config: Mapping[str, Any],
        container: str,
        on_line: LineSink = _ignore,
    ) -> None:
        (context / "Containerfile").write_text(containerfile(parent, config), encoding="utf-8")
        args = ["build", "--file", str(context / "Containerfile"), "--tag", ref]
        for name, value in labels.items():
            args += ["--label", f"{name}={value}"]
        run_streaming(self.cmd(*args, str(context)), on_line=on_line)


def resolve_engine(requested: str | None = None) -> Engine:
    """podman unless asked otherwise (argument, then AGENT_SANDBOX_ENGINE); docker when podman is missing.

    Unlike runtime.detect_engine (which picks the engine whose daemon answers, to run containers), a build
    picks by installed executable: podman needs no daemon, but needs buildah. check_engine_ready follows.
    """
    wanted = requested or os.environ.get("AGENT_SANDBOX_ENGINE") or ""
    if wanted and wanted not in ENGINES:
        raise InputError(f"unknown engine {wanted!r}; choose podman or docker")
    for name in [wanted] if wanted else list(ENGINES):
        exe = shutil.which(name)
        if exe and name == "podman":
            return Podman(name, exe, require_tool("buildah", "podman builds its layers with buildah"))
        if exe:
            return Docker(name, exe)
    raise EnvironmentProblem(
        f"no container engine: {wanted or 'podman or docker'} is not installed (run scripts/setup-host.sh)"
    )


def check_engine_ready(engine: Engine) -> None:
    """docker needs its daemon (podman needs nothing running): runtime's probe, `docker info`."""
    if engine.name == "docker" and not engine_answers(engine.name):
        raise EnvironmentProblem(
            "docker is installed but does not answer `docker info`: is dockerd running (or DOCKER_HOST set)?"
        )


def require_tool(name: str, hint: str) -> str:
    exe = shutil.which(name)
    if not exe:
        raise EnvironmentProblem(f"{name} is not installed ({hint})")
    return exe


# ------------------------------------------------------------------ mmdebstrap
def mmdebstrap_argv(
    *,
    suite: str,
    variant: str,
    packages: Sequence[str],
    sources: Sequence[str],
    apt_options: Sequence[str],
    dpkg_options: Sequence[str],
    script_path: Path,
    output: Path,
) -> list[str]:
    argv = ["mmdebstrap", f"--variant={variant}", "--mode=root", "--format=tar"]
    argv += [f"--aptopt={opt}" for opt in apt_options]
    argv += [f"--dpkgopt={opt}" for opt in dpkg_options]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv.append(f'--customize-hook=chroot "$1" /bin/sh -eu < {shlex.quote(str(script_path))}')
    argv += [suite, str(output), *sources]
    return argv
