"""The key gateway: the part of a sandbox's egress proxy that holds the user's API keys (pure).

For every model provider (images/catalog.toml [providers]) whose API host the profile allowlists, the sandbox's
proxy listens on the provider's gateway port as a reverse proxy for that API: it takes plain HTTP from its own
sandbox only, only for the API's paths, strips every credential header the agent sent, adds the real key and
forwards over verified TLS to the provider. The agent holds a placeholder key and a base URL pointing at the
gateway (agents.py). The real keys never enter the agent container: `keys_file` renders the one line per key that
Squid includes, and the runtime writes it through a pipe into the proxy's tmpfs — never to a disk or a command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .. import egress
from ..errors import EnvironmentProblem
from ..images import Catalog, Provider
from ..model import NetworkMode, Profile

PLACEHOLDER = "sk-agent-sandbox-placeholder-not-a-key"
KEYS_FILE = "/run/squid/keys.conf"  # in the proxy's tmpfs
CREDENTIAL_HEADERS = ("Authorization", "x-api-key", "x-goog-api-key", "api-key", "Proxy-Authorization")
# Squid's quoted strings take %-codes and escapes: a key is passed only if it is made of these (every provider's is).
KEY_CHARS = re.compile(r"[A-Za-z0-9._~+/=:-]{8,1024}")


def served(profile: Profile, catalog: Catalog) -> tuple[Provider, ...]:
    """The providers whose API host:443 the profile allowlists (proxied profiles only): the gateway reaches nothing
    the profile does not allow."""
    if profile.network.mode is not NetworkMode.PROXIED:
        return ()
    allowed = {(r.host, r.port) for r in profile.network.allow if not r.is_wildcard}
    return tuple(p for p in catalog.providers.values() if (p.host, 443) in allowed or (p.host, None) in allowed)


def base_url(provider: Provider) -> str:
    return f"http://{egress.PROXY_HOST}:{provider.port}"


def squid_section(providers: Sequence[Provider]) -> str:
    """The gateway's part of squid.conf (no secret in it): ports, peers, header rules, access rules."""
    if not providers:
        return "# (no key gateway in this sandbox)"
    lines = ["# the key gateway: the real keys are in " + KEYS_FILE + " (the proxy's tmpfs), written at start"]
    for p in providers:
        port, gw = p.port, f"gw_{p.name}"
        paths = " ".join("^" + re.escape(prefix) for prefix in p.paths)
        lines += [
            f"http_port {port} accel defaultsite={p.host} name={gw}",
            f"acl {gw} myportname {gw}",
            f"acl {gw}_paths urlpath_regex {paths}",
            f"cache_peer {p.host} parent 443 0 no-query no-digest no-netdb-exchange originserver "
            f"forceddomain={p.host} tls tls-cafile=/etc/ssl/certs/ca-certificates.crt name=peer_{p.name}",
            f"cache_peer_access peer_{p.name} allow {gw}",
            f"cache_peer_access peer_{p.name} deny all",
            f"http_access deny {gw} !{gw}_paths why_gateway_path",
            f"http_access deny {gw} gateway_query_key why_gateway_path",
            f"http_access allow {gw} mark_allowed",
        ]
        lines += [f"request_header_access {h} deny {gw}" for h in CREDENTIAL_HEADERS]
    lines.append("never_direct allow gateway_ports")
    lines.append("include " + KEYS_FILE)
    return "\n".join(lines)


def gateway_acls(providers: Sequence[Provider]) -> str:
    if not providers:
        return ""
    return "\n".join(
        [
            f"acl gateway_ports myportname {' '.join(f'gw_{p.name}' for p in providers)}",
            "acl gateway_query_key urlpath_regex [?&]key=",
            "acl why_gateway_path annotate_transaction reason=not_the_providers_api",
        ]
    )


def keys_file(providers: Sequence[Provider], keys: Mapping[str, str]) -> str:
    """The lines that add the real keys (SECRET: for the proxy's tmpfs only, through a pipe)."""
    lines = []
    for p in providers:
        value = keys[p.key]
        if not KEY_CHARS.fullmatch(value):
            raise EnvironmentProblem(
                f"${p.key} has characters the key gateway does not pass (letters, digits and "
                "._~+/=:- only); check the value, or run with --keys-inside"
            )
        lines.append(f'request_header_add {p.header} "{p.prefix}{value}" gw_{p.name}')
    return "\n".join(lines) + "\n"
