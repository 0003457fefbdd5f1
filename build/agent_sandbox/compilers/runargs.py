"""Compile a profile into docker/podman run flags (pure).

`run_spec` is the structured form; `run_args` renders the docker/podman CLI list and the devcontainer
compiler renders the same spec into devcontainer.json fields, so both always agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping

import attrs

from .. import egress
from ..labels import LABEL_TIER as TIER_LABEL
from ..model import WORKSPACE, Mount, NetworkMode, Profile
from .seccomp import default_seccomp_path


@functools.cache
def api_key_vars() -> tuple[str, ...]:
    """The API keys the agents read (images/catalog.toml `keys`): passed through by name (`-e NAME`,
    `${localEnv:NAME}`), never by value."""
    from ..images import api_key_vars as catalog_keys
    from ..images import load_catalog

    return catalog_keys(load_catalog())


@attrs.frozen
class RunSpec:
    flags: tuple[str, ...]  # hardening, limits, network, tmpfs, user, label
    env: tuple[tuple[str, str], ...]  # fixed values (tier, proxy settings, profile env)
    passthrough_env: tuple[str, ...]  # host variables forwarded by name
    mounts: tuple[Mount, ...]
    workspace_mode: str  # rw | ro


def _tmpfs_flag(path: str) -> str:
    # World-writable with the sticky bit, like /tmp. runc ignores mode= where the image already has the
    # directory (podman refuses uid=/gid= options): a directory the user must own belongs in `scratch`.
    return f"--tmpfs={path}:rw,nosuid,nodev,mode=1777"


def run_spec(
    profile: Profile, *, uid: int = 1000, gid: int = 1000, network: str | None = None, seccomp: str | None = None
) -> RunSpec:
    """`network`: the internal network a proxied profile joins (default: egress.EGRESS_NETWORK, the name the
    devcontainer files use; `agent-sandbox run` gives every sandbox its own).

    `seccomp`: where the profile's seccomp file is (compilers/seccomp.py; only profiles with
    `container.user_namespaces: false` have one). This compiler writes no file: by default the flag names
    seccomp.SECCOMP_DIR under `${localEnv:HOME}`, where `policy compile` puts it; the runtime passes the copy it
    wrote into the sandbox's state directory."""
    box = profile.container
    flags: list[str] = [f"--user={uid}:{gid}"]
    flags += [f"--cap-drop={cap}" for cap in box.cap_drop]
    flags += [f"--cap-add={cap}" for cap in box.cap_add]
    if box.no_new_privileges:
        flags.append("--security-opt=no-new-privileges")
    seccomp_path = seccomp or default_seccomp_path(profile)
    if seccomp_path is not None:
        flags.append(f"--security-opt=seccomp={seccomp_path}")
    if profile.filesystem.readonly:
        flags.append("--read-only")
    flags += [_tmpfs_flag(path) for path in box.tmpfs]
    # An anonymous volume starts as a copy of the image's directory, ownership included (docker and podman).
    flags += [f"--mount=type=volume,target={path}" for path in box.scratch]
    if box.memory_bytes is not None:
        # swap equal to memory: the limit is the limit, not memory plus as much swap again
        size = box.memory.lower() if box.memory else str(box.memory_bytes)
        flags += [f"--memory={size}", f"--memory-swap={size}"]
    if box.cpus is not None:
        flags.append(f"--cpus={box.cpus:g}")
    if box.pids is not None:
        flags.append(f"--pids-limit={box.pids}")
    env: list[tuple[str, str]] = [("AGENT_SANDBOX_TIER", profile.name), ("SANDBOX_MODE", "true")]
    mode = profile.network.mode
    if mode is NetworkMode.NONE:
        flags.append("--network=none")
    elif mode is NetworkMode.PROXIED:
        flags.append(f"--network={network or egress.EGRESS_NETWORK}")
        # No name resolution inside (the proxy resolves: DNS cannot carry data out), no IPv6 at all.
        flags.append(f"--dns={egress.NO_RESOLVER}")
        flags.append("--sysctl=net.ipv6.conf.all.disable_ipv6=1")
        for name in egress.PROXY_VARS:
            env.append((name, egress.PROXY_URL))
        env += [("NO_PROXY", egress.NO_PROXY), ("no_proxy", egress.NO_PROXY)]
    flags.append(f"--label={TIER_LABEL}={profile.name}")
    env += list(box.env)
    passthrough = () if mode is NetworkMode.NONE else api_key_vars()
    return RunSpec(tuple(flags), tuple(env), passthrough, box.mounts, profile.workspace_mode)


def expand_local_env(text: str, host_env: Mapping[str, str]) -> str:
    """Resolve the devcontainer form `${localEnv:NAME}` against the host environment."""
    out = text
    for name, value in host_env.items():
        out = out.replace("${localEnv:" + name + "}", value)
    return out


def mount_sources(profile: Profile, host_env: Mapping[str, str]) -> tuple[tuple[Mount, str], ...]:
    """Each of the profile's bind mounts with its source resolved against `host_env`."""
    return tuple((m, expand_local_env(m.source, host_env)) for m in profile.container.mounts)


def missing_mounts(
    profile: Profile, host_env: Mapping[str, str], exists: Callable[[str], bool]
) -> tuple[tuple[Mount, str], ...]:
    """The profile's mounts whose resolved source does not exist (`exists` answers for the host: the runtime passes
    os.path.exists). A profile's mount is an offer of the host's files (trusted: ~/.gitconfig, ~/.ssh), not a
    requirement: the runtime leaves these out with a warning instead of failing the start, as an engine would
    (`statfs /root/.ssh: no such file or directory`). A source still containing `${localEnv:...}` (the variable
    is unset) is missing too."""
    return tuple((m, src) for m, src in mount_sources(profile, host_env) if "${localEnv:" in src or not exists(src))


def run_args(
    profile: Profile,
    *,
    workspace: str | None = None,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    network: str | None = None,
    seccomp: str | None = None,
    skip_mounts: Collection[str] = (),
) -> list[str]:
    """The docker/podman `run` flags for a profile (its container layer's policy). `workspace` is the host
    directory mounted at /workspace.

    `${localEnv:NAME}` in the flags (the seccomp file's default place) and in the mounts' sources resolves against
    `host_env`. `skip_mounts`: targets of the profile's mounts to leave out (the runtime's choice: `missing_mounts`)."""
    spec = run_spec(profile, uid=uid, gid=gid, network=network, seccomp=seccomp)
    host_env = host_env or {}
    args = [expand_local_env(flag, host_env) for flag in spec.flags]
    args += [f"--env={name}={value}" for name, value in spec.env]
    args += [f"--env={name}" for name in spec.passthrough_env]
    if workspace is not None:
        ro = ",readonly" if spec.workspace_mode == "ro" else ""
        args.append(f"--mount=type=bind,source={workspace},target={WORKSPACE}{ro}")
        args.append(f"--workdir={WORKSPACE}")
    for mount in spec.mounts:
        if mount.target in skip_mounts:
            continue
        ro = ",readonly" if mount.readonly else ""
        args.append(f"--mount=type=bind,source={expand_local_env(mount.source, host_env)},target={mount.target}{ro}")
    return args
