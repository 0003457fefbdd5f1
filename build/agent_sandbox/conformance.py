"""What a running sandbox must look like from inside, derived from its tier's profile, and the checks that say so.

Nothing here is kept per tier: `expect(profile)` derives every expectation from the profile (the same one the
compilers turn into run flags), so a new or edited tier is verified without touching the suite. The checks read
what the kernel reports inside the container (/proc, cgroup files, mountinfo), which is the same on podman,
docker and GitHub runners, and raise `ConformanceFailure` (an AssertionError) with the evidence.

Three layers, used by tests/conformance and by `agent-sandbox verify`:
- `expect(profile)`       -> `Expectations` (pure);
- `parse_*`               -> facts from text the container printed (pure);
- `check_*`               -> raise ConformanceFailure when facts contradict expectations (pure);
- `Probe(host)`           -> collects facts through a pytest-testinfra host (`podman://NAME`, `docker://NAME`).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import attrs

from . import egress
from .compilers.runargs import run_spec
from .model import WORKSPACE, NetworkMode, Profile


class ConformanceFailure(AssertionError):
    """A sandbox does not do what its tier claims. The message carries the evidence."""


# ---------------------------------------------------------------- capabilities
CAPABILITY_BITS: dict[str, int] = {
    name: bit
    for bit, name in enumerate(
        ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]
    )
}

# Capabilities no engine grants by default: holding one without the tier adding it means a privileged container.
PRIVILEGED_CAPS = frozenset(
    ["SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_PTRACE", "SYS_BOOT", "SYS_TIME", "SYS_RESOURCE", "SYS_PACCT", "SYS_TTY_CONFIG", "NET_ADMIN", "MAC_ADMIN", "MAC_OVERRIDE", "LINUX_IMMUTABLE", "IPC_LOCK", "DAC_READ_SEARCH", "BPF", "PERFMON", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_CONTROL", "AUDIT_READ", "CHECKPOINT_RESTORE", "LEASE"]
)

CAP_FIELDS = ("CapEff", "CapPrm", "CapBnd", "CapAmb")


def cap_mask(names: Iterable[str]) -> int:
    return sum(1 << CAPABILITY_BITS[name] for name in set(names))


def cap_names(mask: int) -> frozenset[str]:
    known = {name for name, bit in CAPABILITY_BITS.items() if mask & (1 << bit)}
    unknown = mask & ~cap_mask(CAPABILITY_BITS)
    return frozenset(known | ({f"bit-mask-0x{unknown:x}"} if unknown else set()))


# ---------------------------------------------------------------- expectations
# Files and directories that hold host credentials or control the host's container engine. None may be
# reachable in any tier unless the tier itself mounts it (trusted mounts ~/.ssh and ~/.gitconfig).
CREDENTIAL_PATHS = (
    "~/.ssh",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker",
    "~/.gnupg",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
)

# Bind mounts every engine adds; anything else backed by a host filesystem must be the workspace or a tier mount.
ENGINE_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv", "/.dockerenv"})

# Filesystems that are not host storage: kernel interfaces and memory-backed scratch space.
PSEUDO_FS = frozenset(
    ["proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "bpf", "fusectl", "configfs", "pstore", "hugetlbfs", "nsfs", "autofs", "binfmt_misc", "efivarfs", "selinuxfs", "ramfs"]
)
VOLATILE_FS = frozenset({"tmpfs", "ramfs", "devpts", "mqueue"})  # what a user may write without it persisting

# Directories only root may write on every image; a sandbox user writing one is a failure in every tier.
SYSTEM_DIRS = ("/", "/etc", "/usr", "/usr/bin", "/usr/local/bin", "/var/lib", "/opt")

UNLIMITED = 1 << 60  # cgroup v1 reports "no memory limit" as a huge page-aligned number


@attrs.frozen
class TierMount:
    target: str
    readonly: bool


@attrs.frozen
class Expectations:
    """Everything the container layer of a tier claims, derived from the profile by `expect`."""

    tier: str
    user: str
    uid: int
    gid: int
    home: str
    drops_all_caps: bool  # cap_drop has ALL: the bounding set is exactly cap_add
    cap_add: frozenset[str]
    cap_drop: frozenset[str]  # explicitly dropped (when not ALL)
    no_new_privileges: bool
    readonly_root: bool
    workspace_mode: str  # rw | ro
    tmpfs: tuple[str, ...]
    scratch: tuple[str, ...]  # throwaway user-owned directories: anonymous volumes removed with the container
    mounts: tuple[TierMount, ...]
    memory_bytes: int | None  # None: unlimited
    cpus: float | None  # None: unlimited
    pids: int | None  # None: the tier sets none (the engine's default applies; podman's is 2048)
    network: NetworkMode
    env: tuple[tuple[str, str], ...]  # variables set to fixed values by the run flags
    unset_env: tuple[str, ...]  # variables that must not be set inside (API keys the caller did not pass)
    denied_paths: tuple[str, ...]  # must be absent, unreadable, or an empty non-mount directory
    escalation_blocked: bool  # setuid sudo/su cannot give root (no_new_privileges)

    @property
    def bounding_caps(self) -> frozenset[str] | None:
        """The exact bounding set when the tier drops ALL, else None (the engine's default set minus drops)."""
        return self.cap_add if self.drops_all_caps else None

    @property
    def forbidden_caps(self) -> frozenset[str]:
        """Capabilities that must be absent from every set: the privileged ones the tier does not add, and drops."""
        return (PRIVILEGED_CAPS - self.cap_add) | self.cap_drop

    @property
    def mount_targets(self) -> frozenset[str]:
        return frozenset(m.target for m in self.mounts)

    def writable_mount(self, path: str) -> bool:
        """True if `path` is a place the tier's flags make writable for the user (workspace rw, scratch, rw mount)."""
        if path == WORKSPACE:
            return self.workspace_mode == "rw"
        return path in self.scratch or any(m.target == path and not m.readonly for m in self.mounts)


def _expand_home(path: str, home: str) -> str:
    return home + path[1:] if path == "~" or path.startswith("~/") else path


def expect(profile: Profile, *, uid: int = 1000, gid: int = 1000, passed_env: Iterable[str] = ()) -> Expectations:
    """The container-layer claims of `profile` (`passed_env`: the API-key variables the caller forwards)."""
    box = profile.container
    spec = run_spec(profile, uid=uid, gid=gid)
    home = box.home
    mounts = tuple(TierMount(m.target, m.readonly) for m in box.mounts)
    targets = {m.target for m in mounts}
    denied = [_expand_home(p, home) for p in CREDENTIAL_PATHS]
    denied += [rule.path for rule in profile.filesystem.deny]
    # A path the tier mounts on purpose, or one inside it, is checked as a mount instead.
    denied_paths = tuple(
        dict.fromkeys(p for p in denied if not any(p == t or p.startswith(t + "/") for t in targets))
    )
    drops_all = "ALL" in box.cap_drop
    return Expectations(
        tier=profile.name,
        user=box.user,
        uid=uid,
        gid=gid,
        home=home,
        drops_all_caps=drops_all,
        cap_add=frozenset(box.cap_add),
        cap_drop=frozenset() if drops_all else frozenset(box.cap_drop),
        no_new_privileges=box.no_new_privileges,
        readonly_root=profile.filesystem.readonly,
        workspace_mode=profile.workspace_mode,
        tmpfs=tuple(box.tmpfs),
        scratch=tuple(box.scratch),
        mounts=mounts,
        memory_bytes=box.memory_bytes,
        cpus=box.cpus,
        pids=box.pids,
        network=profile.network.mode,
        env=spec.env,
        unset_env=tuple(v for v in spec.passthrough_env if v not in set(passed_env)),
        denied_paths=denied_paths,
        escalation_blocked=box.no_new_privileges,
    )


def describe(exp: Expectations) -> list[str]:
    """One line per claim, for people (`agent-sandbox verify` prints these)."""
    caps = (
        f"no capabilities{' but ' + ', '.join(sorted(exp.cap_add)) if exp.cap_add else ''} (CapEff/CapPrm/CapBnd)"
        if exp.drops_all_caps
        else "engine-default capabilities, none of the privileged ones"
    )
    limits = ", ".join(
        [
            f"memory {exp.memory_bytes} bytes" if exp.memory_bytes else "memory unlimited",
            f"cpus {exp.cpus:g}" if exp.cpus else "cpus unlimited",
            f"pids {exp.pids}" if exp.pids else "pids: engine default",
        ]
    )
    network = {
        NetworkMode.NONE: "loopback only",
        NetworkMode.PROXIED: f"only {egress.EGRESS_NETWORK} (no route to other hosts until the proxy ships)",
        NetworkMode.OPEN: "reaches other hosts",
    }[exp.network]
    return [
        f"identity: uid {exp.uid} ({exp.user}), home {exp.home}"
        + ("; sudo/su cannot give root" if exp.escalation_blocked else ""),
        f"capabilities: {caps}; NoNewPrivs {int(exp.no_new_privileges)}",
        "root filesystem: "
        + ("read-only; nothing the user writes outlives the sandbox" if exp.readonly_root else "read-write"),
        f"workspace: {WORKSPACE} mounted {exp.workspace_mode}; tmpfs: {', '.join(exp.tmpfs) or 'none'} (/tmp 1777)"
        + (f"; scratch volumes: {', '.join(exp.scratch)}" if exp.scratch else ""),
        "host paths: none but engine files, the workspace"
        + (", scratch volumes" if exp.scratch else "")
        + (" and " + ", ".join(sorted(exp.mount_targets)) if exp.mounts else "")
        + f"; out of reach: {', '.join(exp.denied_paths)}",
        f"limits: {limits}",
        f"network: {network}",
    ]


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
                _fail(exp, f"/proc/{who}/status {field}={mask:016x} holds {extra}; the tier drops ALL"
                      + (f" and adds only {', '.join(sorted(exp.cap_add))}" if exp.cap_add else ""))
            bad = held & exp.forbidden_caps
            if bad:
                _fail(exp, f"/proc/{who}/status {field}={mask:016x} holds {', '.join(sorted(bad))}, "
                      "which the tier neither adds nor allows (a privileged or widened container)")
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


def check_root_filesystem(exp: Expectations, mounts: list[MountEntry], writes: Mapping[str, str]) -> None:
    """`writes`: path -> outcome of creating a file there as the sandbox user (see `Probe.try_write`)."""
    root = visible_mounts(mounts).get("/")
    if root is None:
        _fail(exp, "mountinfo has no root mount")
    if root.readonly != exp.readonly_root:
        _fail(exp, f"the root filesystem is mounted {'ro' if root.readonly else 'rw'}, the tier says "
              f"{'read-only' if exp.readonly_root else 'read-write'}")
    for path, outcome in writes.items():
        if outcome == "written":
            _fail(exp, f"the sandbox user created a file in {path}")
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
        _fail(exp, f"{WORKSPACE} is {'writable' if WORKSPACE in writable else 'not writable'}, "
              f"the tier's workspace mode is {exp.workspace_mode}")
    if exp.readonly_root:
        for path in sorted(writable):
            entry = mount_of(path, mounts)
            if entry.fstype in VOLATILE_FS or exp.writable_mount(entry.mount_point):
                continue
            _fail(exp, f"the sandbox user can write {path} ({entry.fstype} at {entry.mount_point}), "
                  "which persists beyond the container on a read-only tier")


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
            _fail(exp, f"{mount.target} is mounted {'ro' if found.readonly else 'rw'}, the tier says "
                  f"{'readonly' if mount.readonly else 'read-write'}")


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
        _fail(exp, f"cgroup v{limits.version} memory limit is {limits.memory or 'unlimited'}, "
              f"the tier says {exp.memory_bytes or 'unlimited'}")
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
        _fail(exp, f"the CPU quota is {got_cpus if got_cpus is not None else 'unlimited'} cpus, "
              f"the tier says {exp.cpus:g}")


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
        _fail(exp, f"a process allocating past the memory limit exited {hog_status}, not 137 (SIGKILL by the OOM killer)")
    if oom_kills is not None and oom_kills < 1:
        _fail(exp, "the hog was killed, but the cgroup counted no OOM kill")


# Run inside a container: a child allocates `bytes`; the shell survives to report the child's status and the
# cgroup's OOM-kill counter (v1 memory.oom_control, v2 memory.events).
MEMORY_HOG = (
    'python3 -c "block = b\'x\' * $1"; echo "hog-status=$?"; '
    "for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
    '[ -r "$f" ] && sed -n "s/^oom_kill /oom-kills=/p" "$f"; done; true'
)


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
        _fail(exp, "the image has no devcontainer.metadata label")
    try:
        got = json.loads(label)
    except json.JSONDecodeError as exc:
        raise ConformanceFailure(f"devcontainer.metadata is not JSON: {exc}") from None
    if got != want:
        raise ConformanceFailure(
            "devcontainer.metadata differs from the compiled tier:\n"
            f"  image:    {json.dumps(got, sort_keys=True)}\n  compiled: {json.dumps(want, sort_keys=True)}"
        )


def _classify_write(message: str) -> str:
    if message == "written":
        return message
    for needle, code in (("Read-only file system", "EROFS"), ("Permission denied", "EACCES"),
                         ("No such file or directory", "ENOENT")):
        if needle in message:
            return code
    return message.strip() or "failed"


def split_label_list(value: str | None) -> list[str] | None:
    """A list-valued label: a JSON array, or names separated by commas and/or spaces. None if absent."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("["):
        return [str(v) for v in json.loads(text)]
    return [part for part in text.replace(",", " ").split() if part]


# ---------------------------------------------------------------- probes (through a pytest-testinfra host)
FORK_BOMB = r"""
import os, sys, time
limit = int(sys.argv[1])
pids, error = [], 0
try:
    for _ in range(limit + 64):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        pids.append(pid)
except OSError as exc:
    error = exc.errno
for pid in pids:
    os.kill(pid, 9)
for pid in pids:
    os.waitpid(pid, 0)
print(len(pids), error)
"""

FETCH = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4)
s.settimeout(4)
s.sendall(b"GET /token HTTP/1.0\r\nHost: outside\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode(errors="replace"))
"""


class Probe:
    """Facts about a running sandbox, read from inside through a pytest-testinfra host."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def text(self, path: str) -> str | None:
        result = self.run("cat -- %s", path)
        return result.stdout if result.rc == 0 else None

    def status(self, pid: str) -> dict[str, str]:
        text = self.text(f"/proc/{pid}/status")
        if text is None:
            raise ConformanceFailure(f"cannot read /proc/{pid}/status")
        return parse_status(text)

    def statuses(self) -> dict[str, dict[str, str]]:
        return {"1": self.status("1"), "self": self.status("self")}

    def mounts(self) -> list[MountEntry]:
        text = self.text("/proc/self/mountinfo")
        if text is None:
            raise ConformanceFailure("cannot read /proc/self/mountinfo")
        return parse_mountinfo(text)

    def try_write(self, directory: str) -> str:
        """Create (and remove) a file in `directory`: written | EROFS | EACCES | ENOENT | other error text."""
        return self.try_writes([directory])[directory]

    def try_writes(self, directories: Iterable[str]) -> dict[str, str]:
        """`try_write` for several directories in one exec."""
        directories = list(directories)
        script = (
            'for d in "$@"; do f="${d%/}/.agent-sandbox-conformance-probe"; '
            'if err=$(touch -- "$f" 2>&1); then rm -f -- "$f"; printf "%s\\t%s\\n" "$d" written; '
            'else printf "%s\\t%s\\n" "$d" "$(echo "$err" | head -n1)"; fi; done'
        )
        result = self.run("sh -c %s _ " + " ".join(["%s"] * len(directories)), script, *directories)
        out = {}
        for line in result.stdout.splitlines():
            path, _, message = line.partition("\t")
            out[path] = _classify_write(message)
        missing = [d for d in directories if d not in out]
        if missing:
            raise ConformanceFailure(f"the write probe did not report {missing}: {result.stderr.strip()}")
        return out

    def writable_places(self, mounts: list[MountEntry], extra: Iterable[str] = ()) -> set[str]:
        """Directories among the mount points (not /proc, /sys), `extra` and / that the user can write."""
        candidates = {"/", *extra}
        for entry in visible_mounts(mounts).values():
            mp = entry.mount_point
            if mp.startswith(("/proc", "/sys")) or entry.readonly:
                continue
            candidates.add(mp)
        dirs = [p for p in sorted(candidates)]
        listing = self.run("for d in " + " ".join(["%s"] * len(dirs)) + '; do [ -d "$d" ] && echo "$d"; done; true', *dirs)
        dirs = listing.stdout.split("\n")
        dirs = [d for d in dirs if d]
        return {path for path, outcome in self.try_writes(dirs).items() if outcome == "written"}

    def path_state(self, path: str) -> str:
        return self.path_states([path])[path]

    def path_states(self, paths: Iterable[str]) -> dict[str, str]:
        """Per path: absent | unreadable | empty-dir | readable (a file or non-empty dir) | mount (a mount point)."""
        paths = list(paths)
        script = (
            'for p in "$@"; do '
            'if ! [ -e "$p" ] && ! [ -L "$p" ]; then s=absent; '
            'elif [ -d "$p" ]; then '
            '  if ! [ -r "$p" ] || ! [ -x "$p" ]; then s=unreadable; '
            '  elif grep -q " $p " /proc/self/mountinfo; then s=mount; '
            '  elif [ -z "$(ls -A "$p" 2>/dev/null)" ]; then s=empty-dir; else s=readable; fi; '
            'elif [ -r "$p" ] || [ -w "$p" ]; then s=readable; else s=unreadable; fi; '
            'printf "%s\\t%s\\n" "$p" "$s"; done'
        )
        result = self.run("sh -c %s _ " + " ".join(["%s"] * len(paths)), script, *paths)
        out = dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
        return {p: out.get(p, f"error: {result.stderr.strip()}") for p in paths}

    def cgroup_limits(self) -> CgroupLimits:
        v2 = self.run("test -f /sys/fs/cgroup/cgroup.controllers").rc == 0
        own = ""
        cgroup = self.text("/proc/self/cgroup") or ""
        if v2:
            for line in cgroup.splitlines():
                if line.startswith("0::"):
                    own = line[3:].strip()
            names = ("memory.max", "memory.swap.max", "pids.max", "cpu.max")
            dirs = [f"/sys/fs/cgroup{own}" if own not in ("", "/") else None, "/sys/fs/cgroup"]
            return parse_cgroup_limits(self._first_files(names, [d for d in dirs if d], {}), 2)
        controller_of = {
            "memory.limit_in_bytes": "memory",
            "memory.memsw.limit_in_bytes": "memory",
            "pids.max": "pids",
            "cpu.cfs_quota_us": "cpu",
            "cpu.cfs_period_us": "cpu",
        }
        paths: dict[str, str] = {}
        for line in cgroup.splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
        files: dict[str, str | None] = {}
        for name, controller in controller_of.items():
            base = f"/sys/fs/cgroup/{controller}"
            candidates = [base]
            if paths.get(controller, "/") != "/":
                candidates.append(base + paths[controller])  # cgroupns=host layouts
            files[name] = self._first([f"{d}/{name}" for d in candidates])
        return parse_cgroup_limits(files, 1)

    def _first(self, paths: list[str]) -> str | None:
        for path in paths:
            text = self.text(path)
            if text is not None:
                return text
        return None

    def _first_files(self, names: Iterable[str], dirs: list[str], out: dict[str, str | None]) -> dict[str, str | None]:
        for name in names:
            out[name] = self._first([f"{d}/{name}" for d in dirs])
        return out

    def interfaces(self) -> list[str]:
        result = self.run("ls /sys/class/net")
        if result.rc == 0:
            return result.stdout.split()
        text = self.text("/proc/net/dev") or ""
        return [line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line]

    def fork_bomb(self, limit: int, timeout: int = 60) -> tuple[int, int]:
        result = self.run(f"timeout {timeout} python3 -c %s %s", FORK_BOMB, str(limit))
        if result.rc != 0:
            raise ConformanceFailure(f"the fork-bomb probe failed ({result.rc}): {result.stderr.strip()[-300:]}")
        forked, error = result.stdout.split()[-2:]
        return int(forked), int(error)

    def alive(self) -> bool:
        return self.run("true").rc == 0

    def fetch_token(self, address: str, port: int, token: str, timeout: int = 10) -> bool:
        result = self.run(f"timeout {timeout} python3 -c %s %s %s", FETCH, address, str(port))
        return result.rc == 0 and token in result.stdout

    def environment(self) -> dict[str, str]:
        result = self.run("env -0")
        return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)

    def escalation_attempts(self) -> dict[str, tuple[int, str]]:
        """Try to become root with sudo and su (without a terminal, with a 5 s timeout each)."""
        attempts = {}
        for command in ("sudo -n id -u", "su -c 'id -u' root"):
            binary = command.split()[0]
            if self.run(f"command -v {binary}").rc != 0:
                attempts[command] = (127, f"{binary} is not installed")
                continue
            result = self.run(f"timeout 5 {command} </dev/null")
            attempts[command] = (result.rc, result.stdout + result.stderr)
        return attempts

