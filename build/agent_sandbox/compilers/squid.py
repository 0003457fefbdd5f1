"""Compile a proxied profile's network rules into squid.conf for its egress proxy (pure).

The proxy (images/agent-sandbox-proxy: Debian's squid-openssl 5.7) is the only way out of a proxied sandbox.
What the rendered configuration enforces, each one a bypass other tools had (docs/egress.md):

- CONNECT and plain HTTP only to allowlisted host:port pairs; a rule without a port means 80 and 443;
- `*.example.com` matches whole DNS labels: `api.example.com`, never `badexample.com` nor `example.com`;
- an IP-literal destination only when that IPv4 address itself is listed (textual match, no other spelling);
- no destination whose resolved address is loopback, private, CGNAT, link-local (cloud metadata), multicast or
  reserved, unless that address is listed: DNS rebinding cannot turn a name into a door to the host. Squid
  connects to the addresses its ACL check resolved (one ipcache entry), so the check cannot be raced;
- TLS on 443: Squid peeks at the ClientHello and splices (no interception); the SNI must be the CONNECT host
  (an external helper compares them), else the connection is closed — no domain fronting, no TLS-less tunnel;
- other allowlisted ports (git over SSH on :22) are tunnelled without peeking (SSH servers speak first);
- every transaction, allowed or denied, is one JSON line in the sandbox's log: free-text fields are
  percent-encoded by Squid, so a hostile SNI or URL cannot break the JSON.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

import attrs

from .. import egress
from ..errors import NotEnforceable
from ..images import Provider
from ..model import HostRule, NetworkMode, Profile
from .gateway import gateway_acls, squid_section

WEB_PORTS = (80, 443)  # what a rule without a port allows
TLS_PORTS = (443,)  # CONNECTs that must carry TLS whose SNI is the CONNECT host
STATE_DIR = "/run/squid"  # the proxy's tmpfs: its throwaway certificate
BUMP_CERT = f"{STATE_DIR}/peek.pem"  # made at start by the entrypoint; never shown to anyone (no bumping)
SNI_HELPER = "/usr/local/lib/agent-sandbox/sni-is-host"
SNI_HELPER_OPTIONS = "children-startup=1 children-max=4 children-idle=1 ttl=300 negative_ttl=300"

# Destinations no allowlisted name may resolve to (unless the address itself is listed).
NONPUBLIC_V4 = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
NONPUBLIC_V6 = ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16")


@attrs.frozen
class Entry:
    """One allowlist (or denylist) entry as the proxy matches it."""

    kind: str  # "name" (exact host or IPv4 literal, matched textually) | "wildcard" (whole labels before suffix)
    host: str  # the name, the IPv4 address, or the wildcard's suffix (without "*.")
    ports: tuple[int, ...]

    @property
    def is_address(self) -> bool:
        return self.kind == "name" and bool(re.fullmatch(r"[0-9.]+", self.host))


def entry(rule: HostRule) -> Entry:
    ports = (rule.port,) if rule.port is not None else WEB_PORTS
    if rule.is_wildcard:
        return Entry("wildcard", rule.host[2:], ports)
    return Entry("name", rule.host, ports)


def entries(rules: Iterable[HostRule]) -> tuple[Entry, ...]:
    return tuple(entry(rule) for rule in rules if not rule.is_any)


def wildcard_regex(suffix: str) -> str:
    """One or more whole labels, then the suffix: `^[^.]+(\\.[^.]+)*\\.example\\.com$` (no bare suffix)."""
    return r"^([a-z0-9_-]+\.)+" + re.escape(suffix).replace(r"\-", "-") + "$"


def _acls(prefix: str, items: tuple[Entry, ...]) -> list[str]:
    """acl lines for host:port pairs: per port and kind a name ACL and its pair with the port, then one ACL
    `<prefix>listed` that matches any pair ("allowlisted", "denylisted")."""
    by_port: dict[tuple[int, str], list[str]] = {}
    for item in items:
        for port in item.ports:
            by_port.setdefault((port, item.kind), []).append(item.host)
    lines: list[str] = []
    pairs: list[str] = []
    for (port, kind), hosts in sorted(by_port.items()):
        name = f"{prefix}_{kind}_{port}"
        hosts = sorted(set(hosts))
        lines.append(f"acl port_{port} port {port}")
        if kind == "name":
            lines.append(f"acl {name} dstdomain -n {' '.join(hosts)}")
        else:
            lines.append(f"acl {name} dstdom_regex -n -i {' '.join(wildcard_regex(h) for h in hosts)}")
        lines.append(f"acl {name}_pair all-of port_{port} {name}")
        pairs.append(f"{name}_pair")
    if pairs:
        lines.append(f"acl {prefix}listed any-of {' '.join(pairs)}")
    return list(dict.fromkeys(lines))


def render_squid(profile: Profile, *, sandbox: str, subnet: str | None = None, gateway: Sequence[Provider] = ()) -> str:
    """squid.conf for `profile`'s egress proxy in sandbox `sandbox` (its name goes into every log line).

    `subnet`: the sandbox network's; the proxy serves nothing else (its routed network has other members).
    `gateway`: the providers whose keys the proxy holds (compilers/gateway.py); their keys are not in this file.
    """
    if profile.network.mode is not NetworkMode.PROXIED:
        raise NotEnforceable(f"profile {profile.name} has no egress proxy (network: {profile.network.mode.value})")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", sandbox):
        raise ValueError(f"{sandbox!r}: not a sandbox name")
    allow = entries(profile.network.allow)
    deny = entries(profile.network.deny)
    listed = sorted({e.host for e in allow if e.is_address})
    nonpublic = "dst_nonpublic !listed_address" if listed else "dst_nonpublic"
    denies = (
        "http_access deny !CONNECT denylisted why_denylisted\nhttp_access deny CONNECT denylisted why_denylisted_c"
        if deny
        else "# (no host is denied)"
    )
    if subnet is not None:
        ipaddress.ip_network(subnet)  # ValueError on anything else
    clients = (
        f"acl from_sandbox src {subnet}\nhttp_access deny !from_sandbox why_outsider"
        if subnet
        else "# (any client: the runtime restricts this to the sandbox network's subnet)"
    )
    return TEMPLATE.format(
        tier=profile.name,
        sandbox=sandbox,
        clients=clients,
        gateway_acls=gateway_acls(gateway),
        gateway=squid_section(gateway),
        readiness=egress.READINESS_NAME,
        port=egress.PROXY_PORT,
        state=STATE_DIR,
        cert=BUMP_CERT,
        helper=SNI_HELPER,
        helper_options=SNI_HELPER_OPTIONS,
        log=f"{egress.PROXY_LOG_DIR}/{egress.PROXY_LOG_FILE}",
        tls_ports=" ".join(str(p) for p in TLS_PORTS),
        dst_nonpublic="\n".join(f"acl dst_nonpublic dst {' '.join(g)}" for g in _groups(NONPUBLIC_V4 + NONPUBLIC_V6)),
        listed_address=f"acl listed_address dst {' '.join(a + '/32' for a in listed)}" if listed else "",
        nonpublic=nonpublic,
        acls="\n".join(_acls("deny", deny) + _acls("allow", allow)),
        denies=denies,
        json_allowed=LOG_FORMAT.replace("DECISION", "allowed").replace("SANDBOX", sandbox),
        json_denied=LOG_FORMAT.replace("DECISION", "denied").replace("SANDBOX", sandbox),
    )


def _groups(items: tuple[str, ...], size: int = 6) -> list[tuple[str, ...]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# One JSON object per transaction. Free text is percent-encoded (%#) and width-capped, so that no quote or
# backslash reaches the line and no record passes Squid's 8 KB limit (which would cut the JSON); numbers are
# Squid's counters, which always print digits; the port can be "-", so it is a string.
LOG_FORMAT = (
    '{"time":"%{%Y-%m-%dT%H:%M:%S}tg.%03tuZ","sandbox":"SANDBOX","decision":"DECISION","reason":"%{reason}note",'
    '"client":"%>a","method":"%#.32rm","host":"%#.300>rd","port":"%>rP","url":"%#.2048>ru",'
    '"sni":"%#.300ssl::>sni","status":%>Hs,"squid_status":"%Ss","server":"%<a","bytes_in":%>st,'
    '"bytes_out":%<st,"duration_ms":%tr,"tls":"%ssl::bump_mode","error":"%err_code",'
    '"error_detail":"%#.200err_detail"}'
)

TEMPLATE = """\
# squid.conf of the egress proxy of sandbox {sandbox} (tier {tier}), written by agent-sandbox.
# Generated: edit the tier's network rules instead. Why each line is here: compilers/squid.py and docs/egress.md.

# ---------------------------------------------------------------- process and files (squid -N, read-only root)
pid_filename none
cache_log /dev/stderr
debug_options ALL,1
coredump_dir {state}
cache deny all
cache_mem 0 MB
netdb_filename none
pinger_enable off
umask 077
shutdown_lifetime 1 second
logfile_rotate 0
via off
forwarded_for delete
httpd_suppress_version_string on
visible_hostname {proxy_host}
cache_effective_user proxy
cache_effective_group proxy
hosts_file /etc/hosts

# ---------------------------------------------------------------- listening port
# ssl-bump only to peek at the TLS ClientHello (the SNI); without a certificate Squid silently tunnels everything
# unchecked, so the entrypoint makes a throwaway one, which is never presented (nothing is bumped).
# generate-host-certificates=off: no certificate helpers (they would need an ssl_db and stop Squid).
http_port {port} ssl-bump tls-cert={cert} generate-host-certificates=off

# ---------------------------------------------------------------- the decision of each transaction (for the log)
# annotate_transaction always matches; key=value replaces an earlier value, so the last rule reached decides.
acl mark_allowed annotate_transaction decision=allowed
acl mark_denied annotate_transaction decision=denied
acl why_scheme annotate_transaction reason=scheme_not_allowed
acl why_nonpublic annotate_transaction reason=nonpublic_address
acl why_notlisted annotate_transaction reason=not_allowlisted
acl why_denylisted annotate_transaction reason=denylisted
# the same notes under other names, so that deny_info can answer refused CONNECTs with 407 (below)
acl why_nonpublic_c annotate_transaction reason=nonpublic_address
acl why_notlisted_c annotate_transaction reason=not_allowlisted
acl why_denylisted_c annotate_transaction reason=denylisted
acl why_sni annotate_transaction reason=sni_is_not_the_host
acl why_outsider annotate_transaction reason=not_from_the_sandbox
acl why_not_tls annotate_transaction reason=not_tls
acl decided_allowed note decision allowed
acl has_request has request
acl log_as_allowed all-of has_request decided_allowed
# A peeked and spliced TLS CONNECT is two transactions (the CONNECT, then Squid's own for the tunnel): the first is
# marked and left out of the log, so that one connection is one line.
acl mark_handshake_phase annotate_transaction phase=handshake
acl is_handshake_phase note phase handshake
acl mark_conn_spliced annotate_client tunnel=spliced
acl conn_spliced note tunnel spliced
acl log_skip all-of has_request is_handshake_phase

# ---------------------------------------------------------------- destinations
acl CONNECT method CONNECT
acl plain_http proto HTTP
acl tls_ports port {tls_ports}
# the resolved address is not public unicast (any of the name's addresses; IP literals as they are). IPv4-mapped
# ::ffff:0:0/96 is not listed: Squid reads it as 0.0.0.0/0, and mapped answers meet the IPv4 ranges anyway.
{dst_nonpublic}
{listed_address}
# the tier's host:port pairs (generated); -n: never reverse-resolve, so an IP literal matches only itself
{acls}

# ---------------------------------------------------------------- SNI == CONNECT host
external_acl_type sni_is_host {helper_options} %ssl::>sni %>rd {helper}
acl sni_is_host external sni_is_host
acl step1 at_step SslBump1
acl step2 at_step SslBump2

{gateway_acls}

# ---------------------------------------------------------------- access (first match wins)
http_access deny mark_denied !all
# only the sandbox's own agent: the proxy's routed network has other members
{clients}
# the runtime's readiness probe: refused, and left out of the log
acl readiness_probe dstdomain -n {readiness}
http_access deny readiness_probe
{denies}
# plain HTTP: only http://, only public addresses, only listed host:port pairs
http_access deny !CONNECT !plain_http why_scheme
http_access deny !CONNECT {nonpublic} why_nonpublic

# ---------------------------------------------------------------- the key gateway (compilers/gateway.py)
{gateway}

http_access allow !CONNECT allowlisted mark_allowed
http_access deny !CONNECT why_notlisted
# Squid's own CONNECT for a spliced tunnel passes here again right before it connects: the address is checked
# again, since the client chooses when to send its ClientHello and the name may have been resolved anew (DNS
# rebinding between the CONNECT and the splice).
http_access deny CONNECT conn_spliced {nonpublic} why_nonpublic
http_access allow CONNECT conn_spliced allowlisted mark_allowed
# CONNECT: refused with 407, the one status for which Squid 5.7 does not answer "200" and bump the client to show
# its error page (an ssh client would hang); no Proxy-Authenticate header is sent.
http_access deny CONNECT {nonpublic} why_nonpublic_c
http_access deny CONNECT !allowlisted why_notlisted_c
http_access allow CONNECT
http_access deny all why_notlisted
deny_info 407:ERR_ACCESS_DENIED why_nonpublic_c
deny_info 407:ERR_ACCESS_DENIED why_notlisted_c
deny_info 407:ERR_ACCESS_DENIED why_denylisted_c

# ---------------------------------------------------------------- TLS: peek and splice, never intercept
# other listed ports (ssh on 22): tunnelled at once, without waiting for the client (SSH servers speak first)
ssl_bump splice step1 !tls_ports mark_allowed
ssl_bump peek step1
ssl_bump splice step2 sni_is_host mark_allowed mark_handshake_phase mark_conn_spliced
# SNI other than the CONNECT host (domain fronting) or none: closed. Without this Squid would splice.
ssl_bump terminate all mark_denied why_sni
# bytes that are not TLS in a CONNECT to a TLS port: never tunnelled
on_unsupported_protocol respond all mark_denied why_not_tls

# ---------------------------------------------------------------- the log: one JSON line per transaction
logformat allowed_json {json_allowed}
logformat denied_json {json_denied}
access_log none readiness_probe
access_log none log_skip
access_log stdio:{log} logformat=allowed_json log_as_allowed
access_log stdio:{log} logformat=denied_json !log_as_allowed
""".replace("{proxy_host}", egress.PROXY_HOST)
