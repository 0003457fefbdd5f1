"""Running external commands (podman, docker, buildah, mmdebstrap, git, nix): one runner, one error shape.

Every command of the project goes through `run` (to completion) or `stream` (line by line, for long builds);
both run through plumbum. A failing command becomes `CommandFailed` naming the command and the last lines it
printed; a missing program is `EnvironmentProblem`; an interrupted command is stopped before anything is cleaned
up. Engine-specific knowledge (which engine, its flags) lives in engine.py, on top of this.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
from plumbum import ProcessTimedOut, local
from plumbum.commands.processes import BY_TYPE, CommandNotFound, iter_lines

from .errors import CommandFailed, EnvironmentProblem

TAIL = 15  # stderr lines kept for an error message

LineSink = Callable[[str], None]


def ignore_line(_: str) -> None:
    pass


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def which(name: str) -> str | None:
    return shutil.which(name)


def require(name: str, hint: str) -> str:
    """The path of program `name`, or EnvironmentProblem saying how to get it."""
    exe = which(name)
    if not exe:
        raise EnvironmentProblem(f"{name} is not installed ({hint})")
    return exe


def shown(argv: Sequence[str], words: int = 4) -> str:
    """A command as error messages show it: its first words (never the whole of a long command line)."""
    return " ".join(os.path.basename(argv[0]) if i == 0 else a for i, a in enumerate(argv[:words])) + (
        " ..." if len(argv) > words else ""
    )


def command_failed(argv: Sequence[str], code: int | None, tail: Iterable[str]) -> CommandFailed:
    lines = [line for line in tail if line.strip()]
    detail = ("\n  " + "\n  ".join(lines[-TAIL:])) if len(lines) > 1 else (f": {lines[0].strip()}" if lines else "")
    return CommandFailed(f"`{shown(argv)}` failed (exit {code}){detail}")


@contextmanager
def exactly_env(env: Mapping[str, str] | None) -> Iterator[None]:
    """Run commands with exactly `env` (plumbum otherwise merges it into this process's environment)."""
    if env is None:
        yield
        return
    with local.env():
        local.env.clear()
        local.env.update(dict(env))
        yield


def _bound(argv: Sequence[str]) -> Any:
    try:
        return local[argv[0]][list(argv[1:])]
    except CommandNotFound:
        raise EnvironmentProblem(f"{argv[0]} is not installed") from None


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: str | None = None,
) -> Result:
    """Run argv to completion. With `check`, a non-zero exit raises CommandFailed with the command's last lines.
    `stdin` is written to the command's standard input (how secrets reach a container)."""
    cmd = _bound(argv)
    kwargs: dict[str, Any] = {"retcode": None, "timeout": timeout}
    if cwd is not None:
        kwargs["cwd"] = cwd
    if stdin is not None:  # through a pipe: never on the command line, never in a file
        cmd = cmd << stdin
    try:
        with exactly_env(env):
            code, out, err = cmd.run(**kwargs)
    except ProcessTimedOut:
        raise CommandFailed(f"`{shown(argv)}` did not finish in {timeout:g} s") from None
    result = Result(int(code), out, err)
    if check and not result.ok:
        raise command_failed(argv, result.code, (err or out).splitlines())
    return result


def stream(argv: Sequence[str], *, on_line: LineSink = ignore_line, cwd: str | None = None) -> str:
    """Run argv, feeding every output line to on_line; return stdout. Raises CommandFailed with stderr's tail."""
    cmd = _bound(argv)
    stdout: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    with open(os.devnull, "rb") as devnull:
        proc = cmd.popen(stdin=devnull, cwd=cwd) if cwd else cmd.popen(stdin=devnull)
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
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
