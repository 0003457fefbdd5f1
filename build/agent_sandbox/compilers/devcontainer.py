"""Compile a profile into devcontainer.json and the image's `devcontainer.metadata` label (pure).

Both follow the Dev Containers spec (containers.dev/implementors/json_reference). The spec's image metadata
has no runArgs property, so the label carries the tier's run flags under customizations."agent-sandbox";
hardening the spec does know (capAdd, securityOpt) is also set natively.
"""

from __future__ import annotations

from typing import Any

from ..model import WORKSPACE, Profile
from .runargs import run_spec
from .seccomp import SECCOMP_DIR

# How the tier's bind mounts (trusted: ~/.gitconfig, ~/.ssh) behave when the host lacks their source. The Dev
# Containers spec has no optional mount: its CLI refuses to create the container ("bind source path does not
# exist"). devcontainer.json says so, in the tool-specific customizations the spec reserves for us.
MISSING_MOUNT_SOURCES = (
    "Every source in `mounts` must exist on the host: the Dev Containers CLI refuses to start the container when "
    "one is missing (bind source path does not exist). Create it (an empty file or directory will do) or delete "
    "the mount; `agent-sandbox run` instead leaves a missing source out and says so."
)
SECCOMP_NOTE = (
    f"runArgs names a seccomp profile (no user namespaces) in {SECCOMP_DIR}/: "
    "`agent-sandbox policy compile TIER --target devcontainer` writes it there (or --target seccomp prints it). "
    "Without the file the container does not start."
)


def _container_env(profile: Profile, *, uid: int, gid: int) -> dict[str, str]:
    spec = run_spec(profile, uid=uid, gid=gid)
    env = {name: "${localEnv:" + name + "}" for name in spec.passthrough_env}
    env.update(dict(spec.env))
    return env


def _mounts(profile: Profile) -> list[str]:
    return [
        f"source={m.source},target={m.target},type=bind" + (",readonly" if m.readonly else "")
        for m in run_spec(profile).mounts
    ]


def metadata_label(profile: Profile, *, uid: int = 1000, gid: int = 1000) -> list[dict[str, Any]]:
    """The `devcontainer.metadata` label value (a JSON array with one entry) for an image built for a tier."""
    spec = run_spec(profile, uid=uid, gid=gid)
    entry: dict[str, Any] = {
        "remoteUser": profile.container.user,
        "containerUser": profile.container.user,
        "containerEnv": _container_env(profile, uid=uid, gid=gid),
        "customizations": {
            "agent-sandbox": {"tier": profile.name, "runArgs": list(spec.flags), "workspaceMode": spec.workspace_mode}
        },
    }
    if profile.container.cap_add:
        entry["capAdd"] = list(profile.container.cap_add)
    if profile.container.no_new_privileges:
        entry["securityOpt"] = ["no-new-privileges"]
    if profile.container.mounts:
        entry["mounts"] = _mounts(profile)
    return [entry]


def devcontainer_json(profile: Profile, image: str, *, uid: int = 1000, gid: int = 1000) -> dict[str, Any]:
    """A complete devcontainer.json for running `image` under a tier."""
    spec = run_spec(profile, uid=uid, gid=gid)
    ro = ",readonly" if spec.workspace_mode == "ro" else ""
    config: dict[str, Any] = {
        "name": f"Agent Sandbox ({profile.name})",
        "image": image,
        "runArgs": list(spec.flags),
        "containerEnv": _container_env(profile, uid=uid, gid=gid),
        "workspaceMount": f"source=${{localWorkspaceFolder}},target={WORKSPACE},type=bind{ro}",
        "workspaceFolder": WORKSPACE,
        "remoteUser": profile.container.user,
        "containerUser": profile.container.user,
        "updateRemoteUserUID": False,
        "mounts": _mounts(profile),
    }
    notes = {}
    if profile.container.mounts:
        notes["missingMountSources"] = MISSING_MOUNT_SOURCES
    if any(flag.startswith("--security-opt=seccomp=") for flag in spec.flags):
        notes["seccompProfile"] = SECCOMP_NOTE
    if notes:
        config["customizations"] = {"agent-sandbox": {"tier": profile.name, **notes}}
    return config
