"""The runtime contract of a proxied tier: the networks, the egress proxy's name, port and image.

Every proxied sandbox gets its own internal network (no route out) whose only other member is its own egress
proxy (Squid), which alone also joins a routed network. The agent reaches the proxy by the fixed name
PROXY_HOST (an /etc/hosts entry: the agent has no DNS), so the proxy URL is the same in every sandbox and in the
devcontainer files.
"""

from __future__ import annotations

# The network a devcontainer.json / compose file names; `agent-sandbox run` gives each sandbox its own instead.
EGRESS_NETWORK = "agent-sandbox-egress"
# The routed network every proxy joins (a plain bridge, created when missing) unless told another.
OUTBOUND_NETWORK = "agent-sandbox-outbound"

PROXY_HOST = "agent-sandbox-proxy"
PROXY_PORT = 3128
PROXY_URL = f"http://{PROXY_HOST}:{PROXY_PORT}"
NO_PROXY = f"localhost,127.0.0.1,{PROXY_HOST}"  # the key gateway is reached directly, not through the proxy
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")

# The proxy image (images/agent-sandbox-proxy/image.toml), built by the Debian backend.
PROXY_IMAGE_NAME = "agent-sandbox-proxy"
PROXY_IMAGE = f"localhost/{PROXY_IMAGE_NAME}:latest"

# The proxy container runs as the image's `proxy` user (13) with no capability at all, nothing writable but its
# tmpfs and the log directory, and small limits (it only relays). The runtime and the Compose devcontainer use these.
PROXY_FLAGS = (
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--read-only",
    "--tmpfs=/run/squid:rw,nosuid,nodev,mode=1777",
    "--memory=512m",
    "--memory-swap=512m",
    "--pids-limit=256",
)

# Inside the proxy container: where the rendered squid.conf is mounted and where it logs (a host directory).
PROXY_CONFIG = "/etc/squid/agent-sandbox.conf"
PROXY_LOG_DIR = "/var/log/agent-sandbox"
PROXY_LOG_FILE = "egress.jsonl"

# A name the runtime asks the proxy for to see that it is up and reachable: refused and never logged.
READINESS_NAME = "ready.agent-sandbox.invalid"

# The agent container's resolver: its loopback, where nothing listens. The agent resolves no name (the proxy
# resolves); the engine's DNS server is switched off on the sandbox network (podman) or sees no upstream.
NO_RESOLVER = "127.0.0.1"
