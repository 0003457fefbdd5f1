"""Facts parsed from what a container printed, and the checks that hold them against `Expectations` (pure).

The checks read what the kernel reports inside the container (/proc, cgroup files, mountinfo), which is the same on
podman, docker and GitHub runners, and raise `ConformanceFailure` (an AssertionError) with the evidence.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import attrs

from ..labels import LABEL_METADATA
from ..model import WORKSPACE, NetworkMode
from .expectations import CAP_FIELDS, ENGINE_FILES, Expectations, cap_names


class ConformanceFailure(AssertionError):
    """A sandbox does not do what its tier claims. The message carries the evidence."""


# Filesystems that are not host storage: kernel interfaces and memory-backed scratch space.
PSEUDO_FS = frozenset(
    [
        "proc",
        "sysfs",
        "tmpfs",
        "devpts",
        "mqueue",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "bpf",
        "fusectl",
        "configfs",
        "pstore",
        "hugetlbfs",
        "nsfs",
        "autofs",
        "binfmt_misc",
        "efivarfs",
        "selinuxfs",
        "ramfs",
    ]
)
VOLATILE_FS = frozenset({"tmpfs", "ramfs", "devpts", "mqueue"})  # what a user may write without it persisting

UNLIMITED = 1 << 60  # cgroup v1 reports "no memory limit" as a huge page-aligned number


# ---------------------------------------------------------------- parsing what the container printed
def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status as a dict of field -> value (whitespace-trimmed)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@attrs.frozen
class MountEntry:
    mount_point: str
    root: str  # the path inside the source filesystem (a host path for bind mounts)
    fstype: str
    source: str
    options: frozenset[str]  # per-mount options (ro/rw, nosuid, ...)

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    @property
    def engine_volume(self) -> bool:
        """A volume the engine manages (podman .../storage/volumes/ID/_data, docker .../docker/volumes/ID/_data)."""
        return "/volumes/" in self.root and self.root.endswith("/_data")

    @property
    def host_backed(self) -> bool:
        """Backed by host storage (a bind mount or the host's disk), not a kernel or memory filesystem."""
        return self.fstype not in PSEUDO_FS and not (self.fstype == "overlay" and self.mount_point == "/")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """/proc/self/mountinfo (proc(5)); later entries shadow earlier ones at the same mount point."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        entries.append(
            MountEntry(
                mount_point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
                options=frozenset(fields[5].split(",")),
            )
        )
    return entries


def visible_mounts(entries: list[MountEntry]) -> dict[str, MountEntry]:
    """The mount in effect at each mount point (the last one mounted there)."""
    return {e.mount_point: e for e in entries}


def mount_of(path: str, entries: list[MountEntry]) -> MountEntry:
    """The mount that holds `path` (longest mount point prefix)."""
    best = None
    for entry in visible_mounts(entries).values():
        mp = entry.mount_point
        holds = path == mp or mp == "/" or path.startswith(mp.rstrip("/") + "/")
        if holds and (best is None or len(mp) > len(best.mount_point)):
            best = entry
    if best is None:
        raise ConformanceFailure(f"no mount holds {path}")
    return best


@attrs.frozen
class CgroupLimits:
    version: int  # 1 or 2
    memory: int | None  # bytes; None = unlimited
    memory_swap: int | None  # v1: memory+swap limit; v2: swap alone; None = unlimited or not exposed
    swap_exposed: bool
    pids: int | None  # None = max
    cpu_quota: int | None  # microseconds per period; None = unlimited
    cpu_period: int


def _int_or_none(text: str | None, *, unlimited_above: int | None = None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    if value in ("max", "-1", ""):
        return None
    number = int(value)
    if unlimited_above is not None and number >= unlimited_above:
        return None
    return number


def parse_cgroup_limits(files: Mapping[str, str | None], version: int) -> CgroupLimits:
    """Limits from cgroup files read inside the container. `files` maps a v1 or v2 file name to its content.

    v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes, pids.max, cpu.cfs_quota_us, cpu.cfs_period_us
    v2: memory.max, memory.swap.max, pids.max, cpu.max ("QUOTA PERIOD" or "max PERIOD")
    """
    if version == 2:
        quota_text, _, period_text = (files.get("cpu.max") or "max 100000").strip().partition(" ")
        swap = files.get("memory.swap.max")
        return CgroupLimits(
            version=2,
            memory=_int_or_none(files.get("memory.max")),
            memory_swap=_int_or_none(swap),
            swap_exposed=swap is not None,
            pids=_int_or_none(files.get("pids.max")),
            cpu_quota=_int_or_none(quota_text),
            cpu_period=int(period_text or 100000),
        )
    swap = files.get("memory.memsw.limit_in_bytes")
    return CgroupLimits(
        version=1,
        memory=_int_or_none(files.get("memory.limit_in_bytes"), unlimited_above=UNLIMITED),
        memory_swap=_int_or_none(swap, unlimited_above=UNLIMITED),
        swap_exposed=swap is not None,
        pids=_int_or_none(files.get("pids.max")),
        cpu_quota=_int_or_none(files.get("cpu.cfs_quota_us")),
        cpu_period=int((files.get("cpu.cfs_period_us") or "100000").strip()),
    )


# ---------------------------------------------------------------- checks (pure: facts in, failure out)
def _fail(exp: Expectations, what: str) -> NoReturn:
    raise ConformanceFailure(f"tier {exp.tier}: {what}")


def check_capabilities(exp: Expectations, statuses: Mapping[str, Mapping[str, str]]) -> None:
    """`statuses`: parsed /proc/<pid>/status by label ("1" = the container's init, "self" = an exec'd process)."""
    for who, status in statuses.items():
        sets = {field: int(status[field], 16) for field in CAP_FIELDS if field in status}
        if "CapBnd" not in sets or "CapEff" not in sets:
            _fail(exp, f"/proc/{who}/status has no capability lines")
        bounding = exp.bounding_caps
        for field, mask in sets.items():
            held = cap_names(mask)
            if bounding is not None and not held <= bounding:
                extra = ", ".join(sorted(held - bounding))
                _fail(
                    exp,
                    f"/proc/{who}/status {field}={mask:016x} holds {extra}; the tier drops ALL"
                    + (f" and adds only {', '.join(sorted(exp.cap_add))}" if exp.cap_add else ""),
                )
            bad = held & exp.forbidden_caps
            if bad:
                _fail(
                    exp,
                    f"/proc/{who}/status {field}={mask:016x} holds {', '.join(sorted(bad))}, "
                    "which the tier neither adds nor allows (a privileged or widened container)",
                )
        if bounding is not None and cap_names(sets["CapBnd"]) != bounding:
            missing = ", ".join(sorted(bounding - cap_names(sets["CapBnd"])))
            _fail(exp, f"/proc/{who}/status CapBnd lacks {missing}, which the tier adds")


def check_no_new_privileges(exp: Expectations, statuses: Mapping[str, Mapping[str, str]]) -> None:
    want = "1" if exp.no_new_privileges else "0"
    for who, status in statuses.items():
        got = status.get("NoNewPrivs")
        if got != want:
            _fail(exp, f"/proc/{who}/status NoNewPrivs is {got}, the tier says {want}")


def check_identity(exp: Expectations, *, uid: int, user: str, init_uids: str) -> None:
    """`init_uids`: the Uid: line of /proc/1/status (real, effective, saved, filesystem)."""
    if uid != exp.uid or user != exp.user:
        _fail(exp, f"commands run as uid {uid} ({user}), the tier's user is {exp.uid} ({exp.user})")
    if any(int(u) == 0 for u in init_uids.split()):
        _fail(exp, f"the container's init runs with a root uid (Uid: {init_uids})")
    if any(int(u) != exp.uid for u in init_uids.split()):
        _fail(exp, f"the container's init runs as Uid: {init_uids}, expected {exp.uid}")


def check_escalation(exp: Expectations, attempts: Mapping[str, tuple[int, str]]) -> None:
    """`attempts`: command -> (exit code, output) of trying to run `id -u` as root through sudo/su."""
    for command, (code, output) in attempts.items():
        if code == 0 and output.strip().splitlines() and output.strip().splitlines()[-1].strip() == "0":
            _fail(exp, f"`{command}` gave root (uid 0)")


def check_user_namespaces(exp: Expectations, attempts: Mapping[str, tuple[int, str]]) -> None:
    """`attempts`: command -> (exit code, output) of trying to create a user namespace (`Probe.user_namespace_attempts`;
    exit code 127: the tool to try with is missing). A tier with `user_namespaces: false` claims every try fails;
    other tiers claim nothing (the engine's default seccomp profile decides)."""
    if exp.user_namespaces:
        return
    tried = {command: result for command, result in attempts.items() if result[0] != 127}
    if not tried:
        _fail(exp, "nothing in the image could try to create a user namespace (no unshare, no python3)")
    for command, (code, output) in tried.items():
        if code == 0:
            _fail(
                exp,
                f"`{command}` created a user namespace ({output.strip()[-200:] or 'exit 0'}); "
                "the tier refuses user namespaces",
            )


def check_no_setid_files(exp: Expectations, files: Iterable[str]) -> None:
    """`files`: the setuid/setgid files the sandbox user can reach on the image's root filesystem. None may exist:
    they are escalation paths (with no-new-privileges they gain nothing, but trusted runs without it), and the
    agent never needs to become another user."""
    found = sorted(files)
    if found:
        _fail(exp, f"the image has {len(found)} setuid/setgid program(s): {', '.join(found)}")


def check_root_filesystem(exp: Expectations, mounts: list[MountEntry], writes: Mapping[str, str]) -> None:
    """`writes`: path -> outcome of creating a file there as the sandbox user (see `Probe.try_write`)."""
    root = visible_mounts(mounts).get("/")
    if root is None:
        _fail(exp, "mountinfo has no root mount")
    if root.readonly != exp.readonly_root:
        _fail(
            exp,
            f"the root filesystem is mounted {'ro' if root.readonly else 'rw'}, the tier says "
            f"{'read-only' if exp.readonly_root else 'read-write'}",
        )
    for path, outcome in writes.items():
        if outcome == "written":
            _fail(exp, f"the sandbox user created a file in {path}")
        if outcome == "ENOENT":
            continue  # the image has no such directory: there is nothing to write into
        if exp.readonly_root and mount_of(path, mounts).mount_point == "/" and outcome != "EROFS":
            _fail(exp, f"creating a file in {path} failed with {outcome}, not EROFS: the root is not read-only")


def check_writable_places(exp: Expectations, mounts: list[MountEntry], writable: Iterable[str]) -> None:
    """`writable`: the directories the sandbox user could create a file in (mount points and the root).

    Every tier: its tmpfs and scratch directories are writable; the workspace is writable iff its mode is rw.
    Read-only tiers: each writable place is volatile (tmpfs), a scratch volume, the rw workspace or a rw tier
    mount (that a scratch volume does not outlive the sandbox is `test_nothing_written_outlives_the_sandbox`).
    """
    writable = set(writable)
    for path in exp.scratch:
        entry = visible_mounts(mounts).get(path)
        if entry is None or not entry.engine_volume:
            _fail(exp, f"{path} is not a volume mount (the tier lists it in container.scratch)")
        if path not in writable:
            _fail(exp, f"the sandbox user cannot write {path} (a scratch directory the tier provides)")
    for path in exp.tmpfs:
        entry = visible_mounts(mounts).get(path)
        if entry is None or entry.fstype != "tmpfs":
            _fail(exp, f"{path} is not a tmpfs mount (the tier lists it in container.tmpfs)")
        if path not in writable:
            _fail(exp, f"the sandbox user cannot write {path} (a tmpfs the tier provides for writing)")
    if (WORKSPACE in writable) != (exp.workspace_mode == "rw"):
        _fail(
            exp,
            f"{WORKSPACE} is {'writable' if WORKSPACE in writable else 'not writable'}, "
            f"the tier's workspace mode is {exp.workspace_mode}",
        )
    if exp.readonly_root:
        for path in sorted(writable):
            entry = mount_of(path, mounts)
            if entry.fstype in VOLATILE_FS or exp.writable_mount(entry.mount_point):
                continue
            _fail(
                exp,
                f"the sandbox user can write {path} ({entry.fstype} at {entry.mount_point}), "
                "which persists beyond the container on a read-only tier",
            )


def check_workspace_mount(exp: Expectations, mounts: list[MountEntry]) -> None:
    entry = visible_mounts(mounts).get(WORKSPACE)
    if entry is None:
        _fail(exp, f"{WORKSPACE} is not a mount")
    mode = "ro" if entry.readonly else "rw"
    if mode != exp.workspace_mode:
        _fail(exp, f"{WORKSPACE} is mounted {mode}, the tier's workspace mode is {exp.workspace_mode}")
    if not entry.host_backed:
        _fail(exp, f"{WORKSPACE} is a {entry.fstype}, not the host directory")


def check_host_mounts(exp: Expectations, mounts: list[MountEntry]) -> None:
    """Only engine files, the workspace and the tier's own mounts may come from host storage."""
    allowed = ENGINE_FILES | {WORKSPACE} | exp.mount_targets
    for entry in visible_mounts(mounts).values():
        if not entry.host_backed or entry.mount_point == "/":
            continue
        if entry.mount_point in exp.scratch:
            if not entry.engine_volume:
                _fail(exp, f"{entry.mount_point} should be a scratch volume but is host path {entry.root}")
            continue
        if entry.mount_point not in allowed:
            _fail(exp, f"host path {entry.root} is mounted at {entry.mount_point} ({entry.fstype})")
    for entry in mounts:
        text = f"{entry.root} {entry.mount_point}"
        for sock in ("docker.sock", "podman.sock", "containerd.sock", "/run/podman", "/var/run/docker"):
            if sock in text:
                _fail(exp, f"an engine socket is mounted: {entry.root} at {entry.mount_point}")
    for mount in exp.mounts:
        found = visible_mounts(mounts).get(mount.target)
        if found is None:
            _fail(exp, f"the tier mounts {mount.target}, but it is not mounted")
        if found.readonly != mount.readonly:
            _fail(
                exp,
                f"{mount.target} is mounted {'ro' if found.readonly else 'rw'}, the tier says "
                f"{'readonly' if mount.readonly else 'read-write'}",
            )


def check_denied_paths(exp: Expectations, states: Mapping[str, str]) -> None:
    """`states`: path -> absent | unreadable | empty-dir | readable | mount (see `Probe.path_state`)."""
    for path in exp.denied_paths:
        state = states.get(path)
        if state is None:
            _fail(exp, f"{path} was not probed")
        if state not in ("absent", "unreadable", "empty-dir"):
            _fail(exp, f"{path} is {state} for the sandbox user; it must be out of reach")


def check_tmp(exp: Expectations, mode: int) -> None:
    if mode != 0o1777:
        _fail(exp, f"/tmp has mode {mode:o}, not 1777 (world-writable with the sticky bit)")


def check_limits(exp: Expectations, limits: CgroupLimits) -> None:
    if limits.memory != exp.memory_bytes:
        _fail(
            exp,
            f"cgroup v{limits.version} memory limit is {limits.memory or 'unlimited'}, "
            f"the tier says {exp.memory_bytes or 'unlimited'}",
        )
    if exp.memory_bytes is not None and limits.swap_exposed:
        # the run flags set --memory-swap equal to --memory: no swap on top of the limit
        want = exp.memory_bytes if limits.version == 1 else 0
        if limits.memory_swap != want:
            _fail(exp, f"cgroup v{limits.version} swap limit is {limits.memory_swap}, expected {want} (no extra swap)")
    if exp.pids is not None and limits.pids != exp.pids:
        _fail(exp, f"cgroup pids.max is {limits.pids or 'max'}, the tier says {exp.pids}")
    got_cpus = None if limits.cpu_quota is None else limits.cpu_quota / limits.cpu_period
    if exp.cpus is None:
        if got_cpus is not None:
            _fail(exp, f"a CPU quota of {got_cpus:g} cpus is set; the tier sets none")
    elif got_cpus is None or abs(got_cpus - exp.cpus) > 0.01 * exp.cpus:
        _fail(
            exp,
            f"the CPU quota is {got_cpus if got_cpus is not None else 'unlimited'} cpus, the tier says {exp.cpus:g}",
        )


def check_fork_bomb(exp: Expectations, forked: int, error: int, alive_after: bool) -> None:
    """`forked`: processes created before fork failed; `error`: its errno (0 = it never failed)."""
    if exp.pids is None:
        return
    if error != errno.EAGAIN:
        _fail(exp, f"a fork bomb created {forked} processes and fork never failed with EAGAIN (errno {error})")
    if forked >= exp.pids:
        _fail(exp, f"a fork bomb created {forked} processes, the tier allows {exp.pids}")
    if not alive_after:
        _fail(exp, "the container did not survive a contained fork bomb")


def check_oom(exp: Expectations, hog_status: int, oom_kills: int | None) -> None:
    """`hog_status`: the shell's $? for a process allocating past the limit (137 = killed by SIGKILL);
    `oom_kills`: the cgroup's oom_kill counter afterwards (None where the kernel does not expose it)."""
    if exp.memory_bytes is None:
        return
    if hog_status != 137:
        _fail(
            exp, f"a process allocating past the memory limit exited {hog_status}, not 137 (SIGKILL by the OOM killer)"
        )
    if oom_kills is not None and oom_kills < 1:
        _fail(exp, "the hog was killed, but the cgroup counted no OOM kill")


def parse_hog_output(output: str) -> tuple[int, int | None]:
    status, kills = -1, None
    for line in output.splitlines():
        if line.startswith("hog-status="):
            status = int(line.split("=", 1)[1])
        elif line.startswith("oom-kills="):
            kills = int(line.split("=", 1)[1])
    return status, kills


def check_interfaces(exp: Expectations, interfaces: Iterable[str]) -> None:
    names = set(interfaces)
    if exp.network is NetworkMode.NONE:
        if names != {"lo"}:
            _fail(exp, f"network interfaces {sorted(names)}; the tier allows loopback only")
    elif names <= {"lo"}:
        _fail(exp, f"only loopback ({sorted(names)}); the tier has a network")


def check_outside_reach(exp: Expectations, reached: Mapping[str, bool]) -> None:
    """`reached`: address of our own 'outside' HTTP server -> whether the sandbox fetched its token."""
    if exp.network is NetworkMode.OPEN:
        if not any(reached.values()):
            _fail(exp, f"cannot reach the outside server at {', '.join(reached)}; the tier's network is open")
    else:
        hits = [addr for addr, ok in reached.items() if ok]
        if hits:
            _fail(exp, f"reached the outside server at {', '.join(hits)}; the tier's network is {exp.network.value}")


def check_env(exp: Expectations, env: Mapping[str, str]) -> None:
    for name, value in exp.env:
        if env.get(name) != value:
            _fail(exp, f"${name} is {env.get(name)!r} inside, the tier sets {value!r}")
    for name in exp.unset_env:
        if name in env:
            _fail(exp, f"${name} is set inside although the caller did not pass it")
    if env.get("HOME") != exp.home:
        _fail(exp, f"$HOME is {env.get('HOME')!r}, the tier's user's home is {exp.home}")


def check_metadata_label(exp: Expectations, label: str | None, want: list[dict[str, Any]]) -> None:
    if label is None:
        _fail(exp, f"the image has no {LABEL_METADATA} label")
    try:
        got = json.loads(label)
    except json.JSONDecodeError as exc:
        raise ConformanceFailure(f"{LABEL_METADATA} is not JSON: {exc}") from None
    if got != want:
        raise ConformanceFailure(
            f"{LABEL_METADATA} differs from the compiled tier:\n"
            f"  image:    {json.dumps(got, sort_keys=True)}\n  compiled: {json.dumps(want, sort_keys=True)}"
        )


def split_label_list(value: str | None) -> list[str] | None:
    """A list-valued label: a JSON array, or names separated by commas and/or spaces. None if absent."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [part for part in text.replace(",", " ").split() if part]
