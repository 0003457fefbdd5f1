"""Compile a profile into docker/podman run flags (pure).

`run_spec` is the structured form; `run_args` renders the docker/podman CLI list and the devcontainer
compiler renders the same spec into devcontainer.json fields, so both always agree.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from .. import egress
from ..labels import LABEL_TIER as TIER_LABEL
from ..model import WORKSPACE, Mount, NetworkMode, Profile



@functools.cache
def api_key_vars() -> tuple[str, ...]:
    """The API keys the agents read (images/catalog.toml `keys`): passed through by name (`-e NAME`,
    `${localEnv:NAME}`), never by value."""
    from ..images import api_key_vars as catalog_keys, load_catalog

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


def run_spec(profile: Profile, *, uid: int = 1000, gid: int = 1000, network: str | None = None) -> RunSpec:
    """`network`: the internal network a proxied tier joins (default: egress.EGRESS_NETWORK, the name the
    devcontainer files use; `agent-sandbox run` gives every sandbox its own)."""
    box = profile.container
    flags: list[str] = [f"--user={uid}:{gid}"]
    flags += [f"--cap-drop={cap}" for cap in box.cap_drop]
    flags += [f"--cap-add={cap}" for cap in box.cap_add]
    if box.no_new_privileges:
        flags.append("--security-opt=no-new-privileges")
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


def _expand_local_env(text: str, host_env: Mapping[str, str]) -> str:
    """Resolve the devcontainer form `${localEnv:NAME}` against the host environment."""
    out = text
    for name, value in host_env.items():
        out = out.replace("${localEnv:" + name + "}", value)
    return out


def run_args(
    profile: Profile,
    *,
    workspace: str | None = None,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    network: str | None = None,
) -> list[str]:
    """The docker/podman `run` flags for a tier. `workspace` is the host directory mounted at /workspace."""
    spec = run_spec(profile, uid=uid, gid=gid, network=network)
    host_env = host_env or {}
    args = list(spec.flags)
    args += [f"--env={name}={value}" for name, value in spec.env]
    args += [f"--env={name}" for name in spec.passthrough_env]
    if workspace is not None:
        ro = ",readonly" if spec.workspace_mode == "ro" else ""
        args.append(f"--mount=type=bind,source={workspace},target={WORKSPACE}{ro}")
        args.append(f"--workdir={WORKSPACE}")
    for mount in spec.mounts:
        ro = ",readonly" if mount.readonly else ""
        args.append(f"--mount=type=bind,source={_expand_local_env(mount.source, host_env)},target={mount.target}{ro}")
    return args
