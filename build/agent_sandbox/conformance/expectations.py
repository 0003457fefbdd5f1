"""What a running sandbox must look like from inside, derived from its tier's profile (pure).

Nothing here is kept per tier: `expect(profile)` derives every expectation from the profile (the same one the
compilers turn into run flags), so a new or edited tier is verified without touching the suite.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .. import egress
from ..compilers.runargs import run_spec
from ..model import CAPABILITY_BITS, WORKSPACE, NetworkMode, Profile

# ---------------------------------------------------------------- capabilities

# Capabilities no engine grants by default: holding one without the tier adding it means a privileged container.
PRIVILEGED_CAPS = frozenset(
    [
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_PTRACE",
        "SYS_BOOT",
        "SYS_TIME",
        "SYS_RESOURCE",
        "SYS_PACCT",
        "SYS_TTY_CONFIG",
        "NET_ADMIN",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "LINUX_IMMUTABLE",
        "IPC_LOCK",
        "DAC_READ_SEARCH",
        "BPF",
        "PERFMON",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "CHECKPOINT_RESTORE",
        "LEASE",
    ]
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

# Directories only root may write on every image; a sandbox user writing one is a failure in every tier.
# /etc/ssl/certs and /usr/local/share/ca-certificates: Leash's bootstrap rules let writes there through, on the
# grounds that Unix permissions stop a non-root agent; this is where that is shown.
SYSTEM_DIRS = (
    "/",
    "/etc",
    "/usr",
    "/usr/bin",
    "/usr/local/bin",
    "/var/lib",
    "/opt",
    "/etc/ssl/certs",
    "/usr/local/share/ca-certificates",
)


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
    # False: creating a user namespace (unshare -Ur, clone(CLONE_NEWUSER)) fails; True: no claim (the engine's
    # default seccomp profile decides)
    user_namespaces: bool = True

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
    denied_paths = tuple(dict.fromkeys(p for p in denied if not any(p == t or p.startswith(t + "/") for t in targets)))
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
        user_namespaces=box.user_namespaces,
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
        NetworkMode.PROXIED: f"only its own internal network: no route out but its egress proxy "
        f"({egress.PROXY_HOST}), no DNS, no IPv6",
        NetworkMode.OPEN: "reaches other hosts",
    }[exp.network]
    return [
        f"identity: uid {exp.uid} ({exp.user}), home {exp.home}"
        + ("; sudo/su cannot give root" if exp.escalation_blocked else ""),
        f"capabilities: {caps}; NoNewPrivs {int(exp.no_new_privileges)}",
        "user namespaces: "
        + (
            "the engine's default decides (no claim)"
            if exp.user_namespaces
            else "refused (unshare -Ur and clone(CLONE_NEWUSER) fail)"
        ),
        "image: no setuid or setgid program the sandbox user can reach",
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
