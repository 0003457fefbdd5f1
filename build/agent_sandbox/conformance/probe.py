"""Collecting facts from a running sandbox through a pytest-testinfra host (`podman://NAME`, `docker://NAME`).

The only module of the suite that talks to a container; what it reads is judged by `checks`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .checks import (
    CgroupLimits,
    ConformanceFailure,
    MountEntry,
    parse_cgroup_limits,
    parse_mountinfo,
    parse_status,
    visible_mounts,
)

# ---------------------------------------------------------------- scripts run inside the sandbox (python3)
# Run inside a container: a child allocates `bytes`; the shell survives to report the child's status and the
# cgroup's OOM-kill counter (v1 memory.oom_control, v2 memory.events).
MEMORY_HOG = (
    'python3 -c "block = b\'x\' * $1"; echo "hog-status=$?"; '
    "for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do "
    '[ -r "$f" ] && sed -n "s/^oom_kill /oom-kills=/p" "$f"; done; true'
)

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

# clone(2) itself with CLONE_NEWUSER (what bubblewrap does), not only unshare(2): a profile that filtered one and
# not the other would leave the door open. Without CLONE_VM the child is a copy of the process (like fork) and
# leaves at once. Flags come first on x86_64 and arm64 (not on s390, which the suite does not run on).
CLONE_NEWUSER_PROBE = r"""
import ctypes, os, platform, sys
number = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
if number is None:
    print("no clone number for", platform.machine()); sys.exit(127)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
zero = ctypes.c_long(0)
pid = libc.syscall(ctypes.c_long(number), ctypes.c_long(0x10000000 | 17), zero, zero, zero, zero)
if pid == 0:
    os._exit(0)
if pid < 0:
    print("clone(CLONE_NEWUSER):", os.strerror(ctypes.get_errno())); sys.exit(1)
os.waitpid(pid, 0)
print("clone(CLONE_NEWUSER): child", pid, "in a new user namespace")
"""


def _classify_write(message: str) -> str:
    if message == "written":
        return message
    for needle, code in (
        ("Read-only file system", "EROFS"),
        ("Permission denied", "EACCES"),
        ("No such file or directory", "ENOENT"),
    ):
        if needle in message:
            return code
    return message.strip() or "failed"


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
        listing = self.run(
            "for d in " + " ".join(["%s"] * len(dirs)) + '; do [ -d "$d" ] && echo "$d"; done; true', *dirs
        )
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
            return [str(name) for name in result.stdout.split()]
        text = self.text("/proc/net/dev") or ""
        return [line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line]

    def fork_bomb(self, limit: int, timeout: int = 60) -> tuple[int, int]:
        result = self.run(f"timeout {timeout} python3 -c %s %s", FORK_BOMB, str(limit))
        if result.rc != 0:
            raise ConformanceFailure(f"the fork-bomb probe failed ({result.rc}): {result.stderr.strip()[-300:]}")
        forked, error = result.stdout.split()[-2:]
        return int(forked), int(error)

    def alive(self) -> bool:
        return bool(self.run("true").rc == 0)

    def fetch_token(self, address: str, port: int, token: str, timeout: int = 10) -> bool:
        result = self.run(f"timeout {timeout} python3 -c %s %s %s", FETCH, address, str(port))
        return result.rc == 0 and token in result.stdout

    def environment(self) -> dict[str, str]:
        result = self.run("env -0")
        return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)

    def user_namespace_attempts(self) -> dict[str, tuple[int, str]]:
        """Try to create a user namespace: `unshare -Ur true` (util-linux) and clone(CLONE_NEWUSER) from python3.
        Exit code 127: the tool is not in the image."""
        attempts = {}
        for command, tool in (("unshare -Ur true", "unshare"), ("python3 clone(CLONE_NEWUSER)", "python3")):
            if self.run(f"command -v {tool}").rc != 0:
                attempts[command] = (127, f"{tool} is not installed")
                continue
            if tool == "unshare":
                result = self.run("timeout 10 unshare -Ur true")
            else:
                result = self.run("timeout 10 python3 -c %s", CLONE_NEWUSER_PROBE)
            attempts[command] = (result.rc, result.stdout + result.stderr)
        return attempts

    def setid_files(self) -> list[str]:
        """Setuid/setgid regular files on the root filesystem (not other mounts) that the user can find."""
        result = self.run("find / -xdev -type f -perm /6000 2>/dev/null; true")
        return [line for line in result.stdout.splitlines() if line.strip()]

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
