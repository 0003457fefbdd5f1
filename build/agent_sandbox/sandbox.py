"""What a sandbox is made of, planned without running anything (pure; runtime.py carries it out).

A sandbox is the agent container, started with exactly its profile's compiled run flags (compilers.runargs), and
for a proxied profile also:

- its own internal network `<name>-net` (no route out; the engine's DNS server switched off where the engine
  allows it), which no other sandbox joins;
- its own egress proxy `<name>-proxy` (Squid, images/agent-sandbox-proxy) with the profile's squid.conf mounted
  read-only, started on the routed outbound network and then connected to the sandbox network: the only member of
  that network with a route out. The agent reaches it as egress.PROXY_HOST through an /etc/hosts entry;
- a state directory on the host (owner-only) holding the rendered squid.conf and the proxy's JSON log, kept
  after the sandbox is gone.

A profile that refuses user namespaces (paranoid) also gets its seccomp profile (compilers/seccomp.py) written into
the state directory: the agent's `--security-opt=seccomp=` names that copy.

Everything the runtime creates carries the label `dev.agent-sandbox.sandbox=<name>`, so that nothing it made can
be left behind unnamed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs

from . import egress
from .compilers.gateway import KEYS_FILE
from .compilers.runargs import run_args
from .compilers.seccomp import seccomp_json
from .compilers.squid import render_squid
from .engine import ENGINES
from .errors import InputError
from .images import Provider
from .labels import LABEL_ROLE
from .model import NetworkMode, Profile

SANDBOX_LABEL = "dev.agent-sandbox.sandbox"  # on every container and network of a sandbox: its name
ROLE_LABEL = LABEL_ROLE  # a sandbox's containers: agent | proxy (images: egress-proxy)

# What keeps a sandbox alive: the Dev Containers CLI overrides the entrypoint the same way (a shell that waits
# and exits on SIGTERM), so the container's PID 1 is a shell started with the profile's flags, not an image daemon.
KEEPALIVE_ENTRYPOINT = "/bin/sh"
KEEPALIVE_COMMAND = ("-c", "trap 'exit 0' TERM INT; while sleep 1000 & wait $!; do :; done")

# Where a CA bundle given with --ca-bundle is mounted (over the image's own), and the variables that make every
# runtime in the image use it: OpenSSL and curl read the system path, Node adds NODE_EXTRA_CA_CERTS, Python's
# requests and pip carry their own bundle unless told.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
CA_VARS = ("SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE")

PROXY_ROLE = "proxy"
AGENT_ROLE = "agent"


def new_name(prefix: str = "agent-sandbox") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def check_name(name: str) -> str:
    """A sandbox name becomes container and network names: the engines' rules, and room for the suffixes."""
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,55}", name):
        raise InputError(
            f"{name!r}: a sandbox name is letters, digits, '_', '.' and '-' (at most 56), "
            "starting with a letter or digit"
        )
    return name


@attrs.frozen
class BindMount:
    """A host path mounted into the agent container besides the tier's (spawn: what git needs of the repository)."""

    source: Path
    target: str
    readonly: bool = True

    def __attrs_post_init__(self) -> None:
        if "," in str(self.source) or "," in self.target:  # --mount's own separator: no quoting exists
            raise InputError(f"{self.source}: a path with a comma cannot be mounted")

    @property
    def flag(self) -> str:
        return f"--mount=type=bind,source={self.source},target={self.target}" + (",readonly" if self.readonly else "")


@attrs.frozen
class Request:
    """What to start: an image under a profile, on an engine, with a workspace. `host_env` resolves the
    profile's `${localEnv:...}` mounts; `skip_mounts` are the targets of its mounts to leave out (the runtime's
    decision: their sources are missing on this host). `proxy_hosts` are extra name -> address entries for the
    proxy's resolver (Squid reads /etc/hosts first). `adjust` (the agent's run flags), `network_adjust` (the
    sandbox network's create command) and `proxy_conf_adjust` (the rendered squid.conf) exist for tests only: the
    conformance suite must start deliberately weakened sandboxes to show that its checks catch them (say so where
    used)."""

    image: str
    profile: Profile
    workspace: Path
    name: str
    engine: str
    state_dir: Path
    uid: int = 1000
    gid: int = 1000
    host_env: Mapping[str, str] = attrs.field(factory=dict)
    proxy_image: str = egress.PROXY_IMAGE
    outbound_network: str = egress.OUTBOUND_NETWORK
    ca_bundle: Path | None = None
    proxy_hosts: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # set in the agent container besides the profile's (never a secret)
    gateway: tuple[Provider, ...] = ()  # providers whose keys the proxy holds (the keys themselves never are here)
    skip_mounts: tuple[str, ...] = ()
    mounts: tuple[BindMount, ...] = ()  # after the tier's (a mount inside another comes after it)
    own_network: bool = False  # an open tier too gets a network of its own (spawn: no agent reaches another)
    adjust: Callable[[list[str]], list[str]] | None = attrs.field(default=None, eq=False)
    network_adjust: Callable[[list[str]], list[str]] | None = attrs.field(default=None, eq=False)
    proxy_conf_adjust: Callable[[str], str] | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"{self.engine!r}: the engine is podman or docker")

    @property
    def proxied(self) -> bool:
        return self.profile.network.mode is NetworkMode.PROXIED


@attrs.frozen
class Plan:
    """The names and commands of one sandbox (argv without the engine's executable)."""

    request: Request

    # ------------------------------------------------------------ names
    @property
    def name(self) -> str:
        return self.request.name

    @property
    def container(self) -> str:
        return self.request.name

    @property
    def network(self) -> str | None:
        """A proxied tier's internal network; an open tier's own routed one when asked for (`own_network`)."""
        own = self.request.own_network and self.request.profile.network.mode is NetworkMode.OPEN
        return f"{self.name}-net" if self.request.proxied or own else None

    @property
    def proxy(self) -> str | None:
        return f"{self.name}-proxy" if self.request.proxied else None

    @property
    def squid_conf(self) -> Path:
        return self.request.state_dir / "squid.conf"

    @property
    def seccomp_text(self) -> str | None:
        """The profile's seccomp profile (None: the engine's default applies)."""
        return seccomp_json(self.request.profile)

    @property
    def seccomp_file(self) -> Path:
        return self.request.state_dir / "seccomp.json"

    @property
    def log_dir(self) -> Path:
        return self.request.state_dir / "proxy"

    @property
    def log_file(self) -> Path:
        return self.log_dir / egress.PROXY_LOG_FILE

    def label(self, role: str) -> list[str]:
        return [f"--label={SANDBOX_LABEL}={self.name}", f"--label={ROLE_LABEL}={role}"]

    # ------------------------------------------------------------ commands
    def network_create(self) -> list[str]:
        """The sandbox's network: internal (no route out), and on podman without its DNS server (aardvark-dns
        forwards outside names to the host's resolvers even on an internal network). An open tier's own network
        is routed, and on podman isolated from the engine's other networks (docker isolates bridges by itself;
        podman routes between them unless told)."""
        assert self.network is not None
        internal = ["--internal"] if self.request.proxied else []
        argv = ["network", "create", *internal, f"--label={SANDBOX_LABEL}={self.name}"]
        if self.request.engine == "podman":
            argv.append("--disable-dns" if self.request.proxied else "--opt=isolate=true")
        argv.append(self.network)
        return self.request.network_adjust(argv) if self.request.network_adjust else argv

    def squid_conf_text(self, subnet: str) -> str:
        req = self.request
        text = render_squid(req.profile, sandbox=self.name, subnet=subnet, gateway=req.gateway)
        return req.proxy_conf_adjust(text) if req.proxy_conf_adjust else text

    def keys_delivery(self) -> list[str]:
        """The proxy-side command that takes the gateway's keys on stdin into its tmpfs (owner-only)."""
        assert self.proxy is not None
        part = KEYS_FILE + ".part"
        return ["exec", "--interactive", self.proxy, "sh", "-c", f"umask 077 && cat > {part} && mv {part} {KEYS_FILE}"]

    def outbound_create(self) -> list[str]:
        return ["network", "create", self.request.outbound_network]

    def proxy_run(self) -> list[str]:
        """The proxy starts on the routed network (its resolver is that network's) and joins the sandbox's next."""
        assert self.proxy is not None
        req = self.request
        argv = [
            "run",
            "--detach",
            f"--name={self.proxy}",
            *self.label(PROXY_ROLE),
            *egress.PROXY_FLAGS,
            f"--network={req.outbound_network}",
            f"--mount=type=bind,source={self.squid_conf},target={egress.PROXY_CONFIG},readonly",
            f"--mount=type=bind,source={self.log_dir},target={egress.PROXY_LOG_DIR}",
        ]
        argv += [f"--add-host={host}:{address}" for host, address in req.proxy_hosts]
        if req.ca_bundle is not None:  # the gateway verifies the providers' TLS with it
            argv.append(f"--mount=type=bind,source={req.ca_bundle},target={SYSTEM_CA},readonly")
        return [*argv, req.proxy_image]

    def proxy_connect(self) -> list[str]:
        assert self.network is not None and self.proxy is not None
        return ["network", "connect", self.network, self.proxy]

    def agent_run(self, proxy_address: str | None = None, *, command: Sequence[str] | None = None) -> list[str]:
        """The agent container: the profile's flags, then the keep-alive entrypoint (or `command`), detached."""
        req = self.request
        seccomp = str(self.seccomp_file) if self.seccomp_text is not None else None
        flags = run_args(
            req.profile,
            workspace=str(req.workspace),
            host_env=dict(req.host_env),
            uid=req.uid,
            gid=req.gid,
            network=self.network,
            seccomp=seccomp,
            skip_mounts=req.skip_mounts,
        )
        flags += [mount.flag for mount in req.mounts]
        if req.adjust is not None:
            flags = req.adjust(list(flags))
        argv = ["run", "--detach", f"--name={self.container}", *self.label(AGENT_ROLE), *flags]
        if self.network is not None and not self.request.proxied:  # an open tier's own network
            argv.append(f"--network={self.network}")
        if self.request.proxied:
            if proxy_address is None:
                raise ValueError("a proxied sandbox needs its proxy's address")
            argv.append(f"--add-host={egress.PROXY_HOST}:{proxy_address}")
        if req.ca_bundle is not None:
            argv.append(f"--mount=type=bind,source={req.ca_bundle},target={SYSTEM_CA},readonly")
            argv += [f"--env={var}={SYSTEM_CA}" for var in CA_VARS]
        argv += [f"--env={name}={value}" for name, value in req.env]
        if command is None:
            return [*argv, f"--entrypoint={KEEPALIVE_ENTRYPOINT}", req.image, *KEEPALIVE_COMMAND]
        if not command:
            raise InputError("an empty command")
        return [*argv, f"--entrypoint={command[0]}", req.image, *command[1:]]

    def removal(self, engine_remove: Callable[[str], list[str]]) -> list[list[str]]:
        """What tears the sandbox down, in order: containers first, then the network they were on."""
        steps = [engine_remove(self.container)]
        if self.proxy:
            steps.append(engine_remove(self.proxy))
        if self.network:
            steps.append(["network", "rm", self.network])
        return steps


def sandbox_command(
    engine: str,
    image: str,
    profile: Profile,
    *,
    workspace: Path | str,
    name: str,
    host_env: Mapping[str, str] | None = None,
    uid: int = 1000,
    gid: int = 1000,
    command: Sequence[str] | None = None,
    adjust: Callable[[list[str]], list[str]] | None = None,
    proxy_address: str | None = "10.0.0.2",
) -> list[str]:
    """The complete `<engine> run ...` argv of a sandbox's agent container (pure; for docs, tests and benches)."""
    request = Request(
        image,
        profile,
        Path(workspace),
        name,
        engine,
        Path("/nonexistent"),
        uid,
        gid,
        host_env=dict(host_env or {}),
        adjust=adjust,
    )
    return [engine, *Plan(request).agent_run(proxy_address if request.proxied else None, command=command)]


def state_root(env: Mapping[str, str] | None = None) -> Path:
    """Where sandboxes keep their state: AGENT_SANDBOX_STATE, else $XDG_STATE_HOME/agent-sandbox, else
    ~/.local/state/agent-sandbox."""
    env = os.environ if env is None else env
    if env.get("AGENT_SANDBOX_STATE"):
        return Path(env["AGENT_SANDBOX_STATE"])
    base = (
        Path(env["XDG_STATE_HOME"])
        if env.get("XDG_STATE_HOME")
        else Path(env.get("HOME", "~")).expanduser() / ".local" / "state"
    )
    return base / "agent-sandbox"


def sandbox_state_dir(name: str, env: Mapping[str, str] | None = None) -> Path:
    return state_root(env) / "sandboxes" / name
