"""The runtime contract of a proxied tier: the network it joins and where its egress proxy listens.

The proxy itself is a later piece; until it ships, a proxied tier's network is `internal` (no route out),
so the tier fails closed rather than open.
"""

from __future__ import annotations

EGRESS_NETWORK = "agent-sandbox-egress"
PROXY_HOST = "agent-sandbox-proxy"
PROXY_PORT = 3128
PROXY_URL = f"http://{PROXY_HOST}:{PROXY_PORT}"
NO_PROXY = "localhost,127.0.0.1"
