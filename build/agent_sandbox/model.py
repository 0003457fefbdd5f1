"""The sandbox profile: frozen values, validated on construction by profiles.py.

Derived facts (network mode, read-only root, workspace mount mode) are properties, never stored twice.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

import attrs

from .errors import Location

WORKSPACE = "/workspace"

# The Linux capabilities by bit number (linux/capability.h), in bit order: the names profiles accept (with ALL)
# and the bits the conformance suite reads from /proc/<pid>/status.
CAPABILITY_BITS: Mapping[str, int] = MappingProxyType(
    {
        name: bit
        for bit, name in enumerate(
            (
                "CHOWN",
                "DAC_OVERRIDE",
                "DAC_READ_SEARCH",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID",
                "SETPCAP",
                "LINUX_IMMUTABLE",
                "NET_BIND_SERVICE",
                "NET_BROADCAST",
                "NET_ADMIN",
                "NET_RAW",
                "IPC_LOCK",
                "IPC_OWNER",
                "SYS_MODULE",
                "SYS_RAWIO",
                "SYS_CHROOT",
                "SYS_PTRACE",
                "SYS_PACCT",
                "SYS_ADMIN",
                "SYS_BOOT",
                "SYS_NICE",
                "SYS_RESOURCE",
                "SYS_TIME",
                "SYS_TTY_CONFIG",
                "MKNOD",
                "LEASE",
                "AUDIT_WRITE",
                "AUDIT_CONTROL",
                "SETFCAP",
                "MAC_OVERRIDE",
                "MAC_ADMIN",
                "SYSLOG",
                "WAKE_ALARM",
                "BLOCK_SUSPEND",
                "AUDIT_READ",
                "PERFMON",
                "BPF",
                "CHECKPOINT_RESTORE",
            )
        )
    }
)

_NOWHERE = Location("<built-in>")


def _where() -> Any:  # an attrs field declaration; typed Any so `where: Location = _where()` checks
    return attrs.field(default=_NOWHERE, eq=False, repr=False, hash=False)


class NetworkMode(enum.Enum):
    """How the container reaches the network; derived from network.allow."""

    NONE = "none"  # no network namespace peers at all: loopback only
    PROXIED = "proxied"  # only through the egress proxy's allowlist
    OPEN = "open"  # direct, unfiltered (Leash may still log and deny)


@attrs.frozen
class HostRule:
    """`host`, `host:port`, `*.domain[:port]`, `*` or an IPv4 address, lower-cased."""

    host: str
    port: int | None = None
    where: Location = _where()

    @property
    def is_any(self) -> bool:
        return self.host == "*"

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


@attrs.frozen
class PathRule:
    """An absolute path; `recursive` means the whole directory tree (written `/dir/**` or `/dir/`)."""

    path: str
    recursive: bool
    where: Location = _where()

    def covers(self, path: str) -> bool:
        """True if this rule applies to `path` (an absolute, normalised path)."""
        if not self.recursive:
            return path == self.path
        return self.path == "/" or path == self.path or path.startswith(self.path + "/")

    @property
    def prefix(self) -> str:
        """The byte prefix an enforcement layer matches: directories end with a slash."""
        if self.recursive:
            return self.path if self.path == "/" else self.path + "/"
        return self.path

    def __str__(self) -> str:
        return self.prefix + ("**" if self.recursive else "")


@attrs.frozen
class Network:
    allow: tuple[HostRule, ...] = ()
    deny: tuple[HostRule, ...] = ()

    @property
    def mode(self) -> NetworkMode:
        if not self.allow:
            return NetworkMode.NONE
        if any(rule.is_any for rule in self.allow):
            return NetworkMode.OPEN
        return NetworkMode.PROXIED


@attrs.frozen
class Filesystem:
    """`write` is the design's `filesystem.allow` (read and write); `read` is read-only; `deny` is no access."""

    readonly: bool = False
    write: tuple[PathRule, ...] = ()
    read: tuple[PathRule, ...] = ()
    deny: tuple[PathRule, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.write or self.read or self.deny)

    def can_write(self, path: str) -> bool:
        """Longest-matching-rule decision for a write (what the compiled policies must agree with)."""
        return self._decide(path, write=True)

    def can_read(self, path: str) -> bool:
        return self._decide(path, write=False)

    def _decide(self, path: str, *, write: bool) -> bool:
        if not self.restricted:
            return True
        best: tuple[int, bool] | None = None
        for rules, allowed in ((self.deny, False), (self.read, not write), (self.write, True)):
            for rule in rules:
                if rule.covers(path):
                    score = len(rule.prefix)
                    # On equal length a denial wins (the compilers refuse such ties anyway).
                    if best is None or score > best[0] or (score == best[0] and not allowed):
                        best = (score, allowed)
        return best[1] if best else False


@attrs.frozen
class Exec:
    """Programs by name (looked up in `search_path`) or by absolute path / directory (`/dir/**`)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    search_path: tuple[str, ...] = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
    where: Location = _where()
    # Where each allow/deny entry was written (parallel to allow/deny; may be empty): for error messages only.
    allow_where: tuple[Location, ...] = attrs.field(default=(), eq=False, repr=False, hash=False)
    deny_where: tuple[Location, ...] = attrs.field(default=(), eq=False, repr=False, hash=False)

    @property
    def restricted(self) -> bool:
        return bool(self.allow or self.deny)


class AuditLevel(enum.Enum):
    ALL = "all"
    DENIED = "denied"
    NONE = "none"


@attrs.frozen
class Audit:
    level: AuditLevel = AuditLevel.ALL
    output: str = "/workspace/.leash/audit.log"
    include_args: bool = True
    include_env: bool = False


@attrs.frozen
class Mount:
    """An extra bind mount; `source` may use the devcontainer form `${localEnv:HOME}`."""

    source: str
    target: str
    readonly: bool = True


@attrs.frozen
class Container:
    user: str = "vscode"
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    # False: a seccomp profile refuses user namespaces (unshare/clone with CLONE_NEWUSER, setns); True: the
    # engine's default seccomp profile decides (podman's allows them, docker's refuses them without CAP_SYS_ADMIN).
    user_namespaces: bool = True
    memory: str | None = None  # as written (8g); memory_bytes gives the number
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None
    tmpfs: tuple[str, ...] = ("/tmp",)
    # Throwaway writable directories owned by the user: anonymous volumes, removed with `run --rm` or
    # `rm --volumes` (agent-sandbox's runtime does; a plain `rm` or the devcontainer CLI leaves them behind).
    # a tmpfs over a directory the image already has stays root-owned under runc, whatever its options.
    scratch: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # extra containerEnv, values may use ${localEnv:X}

    @property
    def home(self) -> str:
        return "/root" if self.user == "root" else f"/home/{self.user}"


@attrs.frozen
class Profile:
    name: str
    version: str
    description: str
    lineage: tuple[str, ...]  # this profile first, then its ancestors
    network: Network
    filesystem: Filesystem
    exec: Exec
    audit: Audit
    container: Container
    source: str = attrs.field(default="<built-in>", eq=False)

    @property
    def workspace_mode(self) -> str:
        """`rw` if the profile lets the agent write /workspace, else `ro` (derived from filesystem rules)."""
        return "rw" if self.filesystem.can_write(WORKSPACE + "/file") else "ro"


def normalise(path: str) -> str:
    """Collapse `//` and `/./`; callers have already rejected relative paths and `..`."""
    return str(PurePosixPath(path))
