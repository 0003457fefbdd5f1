"""Errors meant for the user. The CLI turns them into one line on stderr and an exit status."""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class Location:
    """Where in a user's file a problem was found (line is 1-based; 0 means unknown)."""

    file: Path | str
    line: int = 0
    key: str = ""

    def __str__(self) -> str:
        where = str(self.file)
        if self.line:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        return where


class SandboxError(Exception):
    """Base class: a problem the user can fix. `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(SandboxError):
    """Bad input (a profile, an image description, a flag): exit status 2."""

    exit_code = 2

    def __init__(self, message: str, where: Location | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class NotEnforceable(InputError):
    """A profile asks for something a target layer cannot enforce; refusing beats dropping it silently."""


class EnvironmentProblem(SandboxError):
    """The host lacks something (a container engine, nix, a built image): exit status 3."""

    exit_code = 3


class CommandFailed(SandboxError):
    """An external command (podman, git, nix, mmdebstrap) failed."""

    exit_code = 1


class ChecksFailed(SandboxError):
    """Checks ran and found the subject wanting (a conformance check failed, or nothing could be verified)."""

    exit_code = 1
