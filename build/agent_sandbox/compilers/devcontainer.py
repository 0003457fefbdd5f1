"""Compile a profile into devcontainer.json and the image's `devcontainer.metadata` label (pure).

Both follow the Dev Containers spec (containers.dev/implementors/json_reference). The spec's image metadata
has no runArgs property, so the label carries the profile's run flags under customizations."agent-sandbox";
hardening the spec does know (capAdd, securityOpt) is also set natively.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import egress
from ..model import WORKSPACE, NetworkMode, Profile
from .runargs import run_spec
from .seccomp import SECCOMP_DIR

# How the profile's bind mounts (trusted: ~/.gitconfig, ~/.ssh) behave when the host lacks their source. The Dev
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
    """The `devcontainer.metadata` label value (a JSON array with one entry) for an image built for a profile."""
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
    """A complete devcontainer.json for running `image` under a profile."""
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


# ---------------------------------------------------------------- proxied profiles: a Compose-based devcontainer
# A proxied profile needs its network and its egress proxy up before the agent: the Dev Containers way to have a
# sidecar is a Compose-based devcontainer. `devcontainer_files` writes devcontainer.json, compose.yaml (the agent
# service with exactly the profile's run flags, translated one by one, and the proxy service) and squid.conf.
COMPOSE_FILE = "compose.yaml"
AGENT_SERVICE = "agent"
PROXY_SERVICE = "egress-proxy"
SANDBOX_NETWORK = "sandbox"
OUTBOUND_NETWORK = "outbound"
LOG_VOLUME = "egress-log"


def default_subnet(where: str) -> str:
    """A /24 for the sandbox network, fixed per output directory (static addresses: the agent has no DNS), in
    10.220.0.0/14 so that two projects rarely meet; `--subnet` chooses another."""
    digest = hashlib.sha256(where.encode()).digest()
    return f"10.{220 + digest[0] % 4}.{digest[1]}.0/24"


def _sizes(value: str) -> str:
    return value.lower()


def compose_service(flags: Sequence[str], networks: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The profile's `run` flags as a Compose service, flag by flag; a flag with no translation is an error (the
    hardening must never be dropped on the way). `networks` maps an engine network name (`--network=`) to the
    Compose file's key for it (default: every network is SANDBOX_NETWORK). Values go in as they are: escaping `$`
    for Compose's interpolation is the caller's (compose.py)."""
    service: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        service.setdefault(key, []).append(value)

    for flag in flags:
        name, _, value = flag.partition("=")
        if name == "--user":
            service["user"] = value
        elif name == "--cap-drop":
            add("cap_drop", value)
        elif name == "--cap-add":
            add("cap_add", value)
        elif name == "--security-opt":
            add("security_opt", value)
        elif name == "--read-only":
            service["read_only"] = True
        elif name == "--tmpfs":
            add("tmpfs", value)
        elif name == "--mount" and value.startswith("type=volume,target="):
            add("volumes", value.split("target=", 1)[1])  # an anonymous volume: the profile's scratch directory
        elif name == "--mount" and value.startswith("type=bind,"):
            add("volumes", _bind_volume(value))
        elif name == "--memory":
            service["mem_limit"] = _sizes(value)
        elif name == "--memory-swap":
            service["memswap_limit"] = _sizes(value)
        elif name == "--cpus":
            service["cpus"] = float(value)
        elif name == "--pids-limit":
            service["pids_limit"] = int(value)
        elif name == "--network":
            service["networks"] = ["none"] if value == "none" else [(networks or {}).get(value, SANDBOX_NETWORK)]
        elif name == "--dns":
            add("dns", value)
        elif name == "--sysctl":
            key, _, number = value.partition("=")
            service.setdefault("sysctls", {})[key] = int(number) if number.isdigit() else number
        elif name == "--label":
            key, _, text = value.partition("=")
            service.setdefault("labels", {})[key] = text
        elif name == "--env" and "=" in value:
            add("environment", value)
        elif name == "--workdir":
            service["working_dir"] = value
        elif name == "--add-host":
            add("extra_hosts", value)
        else:
            raise ValueError(f"no Compose translation for the run flag {flag!r}")
    if service.get("networks") == ["none"]:
        del service["networks"]
        service["network_mode"] = "none"
    return service


def _bind_volume(value: str) -> str:
    """`type=bind,source=S,target=T[,readonly]` as the short volume syntax `S:T[:ro]` (no ':' in either path)."""
    parts = dict(p.partition("=")[::2] for p in value.split(","))
    source, target = parts.get("source", ""), parts.get("target", "")
    if ":" in source or ":" in target:
        raise ValueError(f"a bind mount with ':' in a path has no short Compose syntax: {value!r}")
    return f"{source}:{target}" + (":ro" if "readonly" in parts else "")


def devcontainer_files(
    profile: Profile, image: str, *, proxy_image: str, subnet: str, uid: int = 1000, gid: int = 1000
) -> dict[str, str]:
    """devcontainer.json, compose.yaml and squid.conf for a proxied profile (written side by side in .devcontainer/)."""
    from .squid import render_squid

    if profile.network.mode is not NetworkMode.PROXIED:
        raise ValueError(f"{profile.name} is not a proxied profile: its devcontainer.json stands alone")
    network = ipaddress.ip_network(subnet)
    proxy_address = str(list(network.hosts())[1])  # .2 (.1 is the bridge)
    spec = run_spec(profile, uid=uid, gid=gid)
    agent = compose_service(spec.flags)
    agent["image"] = image
    # fixed values, then the API keys by name from the environment `devcontainer up` runs in (empty when unset,
    # as the Dev Containers CLI's ${localEnv:...} gives them)
    agent["environment"] = [f"{name}={value}" for name, value in spec.env] + [
        f"{name}=${{{name}:-}}" for name in spec.passthrough_env
    ]
    ro = ":ro" if spec.workspace_mode == "ro" else ""
    agent.setdefault("volumes", []).insert(0, f"..:{WORKSPACE}{ro}")
    agent["volumes"] += [
        f"{m.source.replace('${localEnv:', '${')}:{m.target}{':ro' if m.readonly else ''}" for m in spec.mounts
    ]
    agent["extra_hosts"] = [f"{egress.PROXY_HOST}:{proxy_address}"]
    agent["depends_on"] = [PROXY_SERVICE]
    proxy = {
        "image": proxy_image,
        **compose_service(egress.PROXY_FLAGS),
        "volumes": [f"./squid.conf:{egress.PROXY_CONFIG}:ro", f"{LOG_VOLUME}:{egress.PROXY_LOG_DIR}"],
        "networks": {SANDBOX_NETWORK: {"ipv4_address": proxy_address}, OUTBOUND_NETWORK: {}},
    }
    compose = {
        "services": {AGENT_SERVICE: agent, PROXY_SERVICE: proxy},
        "networks": {
            # internal: no route out; podman-compose: without aardvark-dns (it forwards outside names)
            SANDBOX_NETWORK: {
                "internal": True,
                "ipam": {"config": [{"subnet": str(network)}]},
                "x-podman.disable_dns": True,
            },
            OUTBOUND_NETWORK: {},
        },
        "volumes": {LOG_VOLUME: {}},
    }
    config = {
        "name": f"Agent Sandbox ({profile.name})",
        "dockerComposeFile": [COMPOSE_FILE],
        "service": AGENT_SERVICE,
        "runServices": [AGENT_SERVICE, PROXY_SERVICE],
        "workspaceFolder": WORKSPACE,
        "shutdownAction": "stopCompose",
        "overrideCommand": True,
        "remoteUser": profile.container.user,
        "containerUser": profile.container.user,
        "updateRemoteUserUID": False,
        "customizations": {"agent-sandbox": {"tier": profile.name, "egressLog": f"volume {LOG_VOLUME}"}},
    }
    header = (
        f"# .devcontainer/{COMPOSE_FILE}: tier {profile.name}, written by `agent-sandbox policy compile "
        f"{profile.name} --target devcontainer`.\n# The agent service carries exactly the tier's run flags; "
        "its only way out is the egress-proxy service.\n"
    )
    return {
        "devcontainer.json": json.dumps(config, indent=2) + "\n",
        COMPOSE_FILE: header + _yaml(compose),
        "squid.conf": render_squid(profile, sandbox=f"devcontainer-{profile.name}", subnet=str(network)),
    }


def compose_yaml(data: Any) -> str:
    """A Compose file's text, read alike by docker-compose v1 (PyYAML, YAML 1.1) and the others."""
    return _yaml(data)


def _yaml(data: Any) -> str:
    """YAML that YAML 1.1 readers (docker-compose's PyYAML) read alike: `1000:1000` quoted (else base 60)."""
    import io
    import re

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    def quoted(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: quoted(v) for k, v in value.items()}
        if isinstance(value, list):
            return [quoted(v) for v in value]
        if isinstance(value, str) and re.fullmatch(r"[0-9:.]+", value):
            return DoubleQuotedScalarString(value)
        return value

    data = quoted(data)
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
