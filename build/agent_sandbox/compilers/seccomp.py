"""The seccomp profile for profiles that refuse user namespaces (`container.user_namespaces: false`) (pure).

Why: without a user namespace an unprivileged agent holds no capability anywhere; with one (`unshare -Ur`) it is
root with every capability over its own namespaces, and reaches kernel code (mounting filesystems, netfilter,
...) that is otherwise closed to it. That is where most container escapes of recent years started.

Whose default it replaces: `--security-opt seccomp=FILE` *replaces* the engine's default profile, so the file
must carry the default's protections itself. The engines ship theirs differently:

- podman reads a file (containers.conf `seccomp_profile`, by default /usr/share/containers/seccomp.json from
  containers-common). It allows unshare, clone with namespace flags, setns, mount, keyctl, ... to every
  container and leaves it to the kernel's capability checks - which a user namespace satisfies.
- docker compiles moby's profiles/seccomp/default.json into dockerd; `docker info` shows only `Profile: builtin`
  (or `default`): there is no file to start from. It refuses unshare, namespace clones, setns and mount to a
  container without CAP_SYS_ADMIN.

So generating ours from the engine's default at run time would work on podman only. We ship one complete
profile instead, built here, the same for both engines, for `agent-sandbox run`, the printed run flags and
devcontainer.json alike: **the intersection of the two engines' defaults** (a system call either default refuses
stays refused, for every capability set: tests/unit/test_seccomp.py compares it with the podman file on the host
and with what docker documents its default to refuse), plus:

- unshare(2) and clone(2) with CLONE_NEWUSER: EPERM, whatever the capabilities (other namespace flags, and
  unshare(2) at all, need CAP_SYS_ADMIN, as under docker);
- clone3(2): ENOSYS (seccomp cannot read its flags, which sit in a struct; glibc then falls back to clone);
- setns(2): EPERM (joining another namespace).

System calls the profile does not know get ENOSYS (podman's choice), so programs that probe a newer call fall
back instead of failing.

The bases, for comparison when updating: containers-common 0.50.1 (Debian 12's podman 4.3) and moby's default
of docker 20.10 to 28. Refreshing them is re-doing the intersection; the unit tests say where it went wrong.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..model import Profile

EPERM, EINVAL, ENOSYS = 1, 22, 38

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET)

AF_NETLINK, NETLINK_AUDIT, AF_VSOCK = 16, 9, 40

# Allowed to every process by both engines' defaults.
ALLOWED = (
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "pselect6",
    "pselect6_time64",
    "ptrace",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
)

# Refused with EPERM by podman's default (docker's refuses them too, by leaving them out).
REFUSED = (
    "bdflush",
    "io_pgetevents",
    "kexec_file_load",
    "kexec_load",
    "migrate_pages",
    "move_pages",
    "nfsservctl",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldolduname",
    "oldstat",
    "olduname",
    "pciconfig_iobase",
    "pciconfig_read",
    "pciconfig_write",
    "sgetmask",
    "ssetmask",
    "swapcontext",
    "swapoff",
    "swapon",
    "sysfs",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "vmsplice",
)

# Allowed only to a container holding the capability, in both defaults (where one default allows a call to
# everyone and the other gates it, it is gated here: mount and its family, reboot, syslog, pidfd_getfd, ...).
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": (
        "bpf",
        "fanotify_init",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "open_tree",
        "perf_event_open",
        "quotactl",
        "setdomainname",
        "sethostname",
        "syslog",
        "umount",
        "umount2",
    ),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "finit_module", "init_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("kcmp", "pidfd_getfd", "process_madvise"),
    "CAP_SYS_RAWIO": ("ioperm", "iopl"),
    "CAP_SYS_TIME": ("clock_settime", "clock_settime64", "settimeofday", "stime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "mbind", "set_mempolicy"),
    "CAP_SYSLOG": ("syslog",),
}

# Architecture-specific calls both defaults allow (libseccomp's names for the architectures).
BY_ARCH = (
    (("ppc64le",), ("sync_file_range2",)),
    (
        ("arm", "arm64"),
        ("arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"),
    ),
    (("amd64", "x32"), ("arch_prctl",)),
    (("amd64", "x32", "x86"), ("modify_ldt",)),
    (("s390", "s390x"), ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr")),
)

PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # both defaults: PER_LINUX, UNAME26, ... and the query

ARCH_MAP = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    ("SCMP_ARCH_MIPS64", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
    ("SCMP_ARCH_MIPS64N32", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
    ("SCMP_ARCH_MIPSEL64", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
    ("SCMP_ARCH_MIPSEL64N32", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
    ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
)
S390 = ["s390", "s390x"]  # clone(2) takes its flags as the second argument there

# Where the printed run flags and devcontainer.json expect the file (`policy compile` writes it there; the
# runtime writes its own copy into each sandbox's state directory). The name carries the content's hash, so a
# changed profile never meets a stale file.
SECCOMP_DIR = "${localEnv:HOME}/.local/share/agent-sandbox/seccomp"


def _rule(
    names: list[str] | tuple[str, ...],
    action: str,
    *,
    errno: int | None = None,
    args: list[dict[str, Any]] | None = None,
    includes: dict[str, Any] | None = None,
    excludes: dict[str, Any] | None = None,
    comment: str = "",
) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": sorted(names), "action": action}
    if errno is not None:
        rule["errnoRet"] = errno
    if args:
        rule["args"] = args
    if comment:
        rule["comment"] = comment
    if includes:
        rule["includes"] = includes
    if excludes:
        rule["excludes"] = excludes
    return rule


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def _masked(index: int, mask: int, want: int) -> dict[str, Any]:
    """(argument & mask) == want."""
    return _arg(index, mask, "SCMP_CMP_MASKED_EQ", want)


def _namespace_rules() -> list[dict[str, Any]]:
    """No CLONE_NEWUSER for anyone; the other namespace flags for CAP_SYS_ADMIN only (docker's rule); clone3
    ENOSYS; setns EPERM. clone(flags, ...) takes its flags first, clone(stack, flags, ...) on s390; unshare(flags)
    is refused outright without CAP_SYS_ADMIN, as docker's default does."""
    all_ns = sum(NAMESPACE_FLAGS)
    admin = ["CAP_SYS_ADMIN"]
    no_user_ns = "agent-sandbox: no user namespaces (container.user_namespaces: false)"
    rules: list[dict[str, Any]] = []
    for index, arches in ((0, {"excludes": {"arches": S390}}), (1, {"includes": {"arches": S390}})):
        inc, exc = arches.get("includes", {}), arches.get("excludes", {})
        rules.append(
            _rule(
                ["clone"],
                "SCMP_ACT_ALLOW",
                args=[_masked(index, all_ns, 0)],
                includes=inc or None,
                excludes={**exc, "caps": admin},
                comment="no namespace flag without CAP_SYS_ADMIN",
            )
        )
        rules += [
            _rule(
                ["clone"],
                "SCMP_ACT_ERRNO",
                errno=EPERM,
                args=[_masked(index, flag, flag)],
                includes=inc or None,
                excludes={**exc, "caps": admin},
            )
            for flag in NAMESPACE_FLAGS
            if flag != CLONE_NEWUSER
        ]
        rules.append(
            _rule(
                ["clone"],
                "SCMP_ACT_ALLOW",
                args=[_masked(index, CLONE_NEWUSER, 0)],
                includes={**inc, "caps": admin},
                excludes=exc or None,
                comment="CAP_SYS_ADMIN: any namespace but a user namespace",
            )
        )
        rules.append(
            _rule(
                ["clone"],
                "SCMP_ACT_ERRNO",
                errno=EPERM,
                args=[_masked(index, CLONE_NEWUSER, CLONE_NEWUSER)],
                includes=inc or None,
                excludes=exc or None,
                comment=no_user_ns,
            )
        )
    rules += [
        _rule(
            ["unshare"],
            "SCMP_ACT_ERRNO",
            errno=EPERM,
            excludes={"caps": admin},
            comment="without CAP_SYS_ADMIN, as docker's default",
        ),
        _rule(
            ["unshare"],
            "SCMP_ACT_ALLOW",
            args=[_masked(0, CLONE_NEWUSER, 0)],
            includes={"caps": admin},
            comment="CAP_SYS_ADMIN: any namespace but a user namespace",
        ),
        _rule(
            ["unshare"],
            "SCMP_ACT_ERRNO",
            errno=EPERM,
            args=[_masked(0, CLONE_NEWUSER, CLONE_NEWUSER)],
            includes={"caps": admin},
            comment=no_user_ns,
        ),
        _rule(
            ["clone3"],
            "SCMP_ACT_ERRNO",
            errno=ENOSYS,
            comment="its flags are out of seccomp's reach: ENOSYS makes glibc fall back to clone",
        ),
        _rule(["setns"], "SCMP_ACT_ERRNO", errno=EPERM, comment="agent-sandbox: no joining namespaces"),
    ]
    return rules


def _socket_rules() -> list[dict[str, Any]]:
    """socket(domain, type, protocol): no AF_VSOCK (docker's default); the audit netlink socket only with
    CAP_AUDIT_WRITE, else EINVAL (podman's).

    Every rule compares an argument at most once, and no two rules of different actions overlap: runc turns a
    rule that compares one argument twice into one rule per comparison (OR, not AND), so "domain != 40 and
    domain != 16" would allow everything. The domains are therefore covered by disjoint ranges."""
    audit = {"caps": ["CAP_AUDIT_WRITE"]}

    def domains_but(excluded: tuple[int, ...], **scope: Any) -> list[dict[str, Any]]:
        low, high = min(excluded), max(excluded)
        rules = [_rule(["socket"], "SCMP_ACT_ALLOW", args=[_arg(0, low, "SCMP_CMP_LT")], **scope)]
        rules += [
            _rule(["socket"], "SCMP_ACT_ALLOW", args=[_arg(0, d, "SCMP_CMP_EQ")], **scope)
            for d in range(low + 1, high)
            if d not in excluded
        ]
        rules.append(_rule(["socket"], "SCMP_ACT_ALLOW", args=[_arg(0, high, "SCMP_CMP_GT")], **scope))
        return rules

    return [
        *domains_but((AF_NETLINK, AF_VSOCK), excludes=audit),
        _rule(
            ["socket"],
            "SCMP_ACT_ALLOW",
            args=[_arg(0, AF_NETLINK, "SCMP_CMP_EQ"), _arg(2, NETLINK_AUDIT, "SCMP_CMP_NE")],
            excludes=audit,
        ),
        _rule(
            ["socket"],
            "SCMP_ACT_ERRNO",
            errno=EINVAL,
            args=[_arg(0, AF_NETLINK, "SCMP_CMP_EQ"), _arg(2, NETLINK_AUDIT, "SCMP_CMP_EQ")],
            excludes=audit,
        ),
        *domains_but((AF_VSOCK,), includes=audit),
    ]


def no_user_namespaces_profile() -> dict[str, Any]:
    """The complete profile (docker/OCI seccomp JSON, read by podman and the docker CLI alike)."""
    syscalls = [
        _rule(ALLOWED, "SCMP_ACT_ALLOW"),
        _rule(REFUSED, "SCMP_ACT_ERRNO", errno=EPERM),
        *[_rule(["personality"], "SCMP_ACT_ALLOW", args=[_arg(0, p, "SCMP_CMP_EQ")]) for p in PERSONALITIES],
        *[_rule(names, "SCMP_ACT_ALLOW", includes={"arches": list(arches)}) for arches, names in BY_ARCH],
        *[_rule(names, "SCMP_ACT_ALLOW", includes={"caps": [cap]}) for cap, names in BY_CAPABILITY.items()],
        *_socket_rules(),
        *_namespace_rules(),
    ]
    return {
        "comment": "agent-sandbox: the intersection of podman's and docker's default seccomp profiles, and no user "
        "namespaces (build/agent_sandbox/compilers/seccomp.py; generated, do not edit)",
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOSYS,
        "archMap": [{"architecture": arch, "subArchitectures": list(sub)} for arch, sub in ARCH_MAP],
        "syscalls": syscalls,
    }


def needs_seccomp(profile: Profile) -> bool:
    """True if the profile replaces the engine's default seccomp profile with ours."""
    return not profile.container.user_namespaces


def seccomp_json(profile: Profile) -> str | None:
    """The profile's seccomp file as text, or None when the profile keeps the engine's default one."""
    if not needs_seccomp(profile):
        return None
    return json.dumps(no_user_namespaces_profile(), indent=2) + "\n"


def seccomp_file_name(text: str) -> str:
    return f"no-user-namespaces-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}.json"


def default_seccomp_path(profile: Profile) -> str | None:
    """Where the compiled run flags and devcontainer.json name the file: under the user's home (`${localEnv:HOME}`,
    resolved by run_args from the host environment and by the Dev Containers CLI), with the content's hash."""
    text = seccomp_json(profile)
    return None if text is None else f"{SECCOMP_DIR}/{seccomp_file_name(text)}"
