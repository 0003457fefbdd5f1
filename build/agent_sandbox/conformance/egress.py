"""The egress proxy's claims: what it must decide for a request, the client that asks it from inside a sandbox,
and the checks that compare the two (used by tests/conformance/test_egress.py).

`decide` is a model of the rendered squid.conf (compilers/squid.py), written from the tier's rules alone: the
conformance suite sends real requests through the real proxy and fails on any decision the model disagrees with.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..compilers.squid import NONPUBLIC_V4, NONPUBLIC_V6, TLS_PORTS, WEB_PORTS
from ..model import HostRule, Profile
from .checks import ConformanceFailure

ALLOWED, DENIED = "allowed", "denied"
_NONPUBLIC = tuple(ipaddress.ip_network(n) for n in NONPUBLIC_V4 + NONPUBLIC_V6)


def _matches(rule: HostRule, host: str, port: int) -> bool:
    ports = (rule.port,) if rule.port is not None else WEB_PORTS
    if port not in ports:
        return False
    if rule.is_wildcard:
        suffix = rule.host[1:]  # ".example.com"
        return host.endswith(suffix) and len(host) > len(suffix) and all(host[: -len(suffix)].split("."))
    return host == rule.host


def nonpublic(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in net for net in _NONPUBLIC if net.version == ip.version)


def decide(profile: Profile, host: str, port: int, addresses: Sequence[str] = ()) -> str:
    """What the egress proxy of `profile` must decide for a request to host:port whose name resolves to
    `addresses`: a listed host:port pair, not denied, and no resolved address in a non-public range (unless that
    address itself is listed)."""
    host = host.lower()
    listed = {r.host for r in profile.network.allow if not r.is_wildcard and not r.is_any}
    if any(nonpublic(a) and a not in listed for a in addresses):
        return DENIED
    if any(_matches(r, host, port) for r in profile.network.deny if not r.is_any):
        return DENIED
    return ALLOWED if any(_matches(r, host, port) for r in profile.network.allow if not r.is_any) else DENIED


def needs_tls(port: int) -> bool:
    return port in TLS_PORTS


# ---------------------------------------------------------------- the client (python3 inside the sandbox)
# Talks to the proxy itself (never through the environment's proxy settings): a CONNECT (optionally a TLS
# handshake with a given SNI and CA, then GET path), or a plain-HTTP proxy request. Prints one JSON object.
PROXY_CLIENT = r"""
import json, socket, ssl, sys
a = json.loads(sys.argv[1])
out = {"status": None, "tls": None, "body": "", "banner": "", "error": ""}
try:
    s = socket.create_connection((a["proxy_host"], a["proxy_port"]), timeout=10)
    s.settimeout(10)
    target = "%s:%d" % (a["host"], a["port"])
    if a["mode"] == "http":
        s.sendall(("GET http://%s%s HTTP/1.0\r\nHost: %s\r\n\r\n" % (target, a["path"], a["host"])).encode())
    else:
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    out["status"] = int(line.split()[1]) if len(line.split()) > 1 and line.split()[1].isdigit() else None
    if a["mode"] == "http":
        rest = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        out["body"] = rest.decode(errors="replace")[:2000]
    elif out["status"] == 200:
        if a.get("plain"):
            s.sendall(a["plain"].encode())
            s.settimeout(5)
            got = b""
            try:
                while len(got) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except OSError:
                pass
            out["banner"] = got.decode(errors="replace")[:2000]
        elif a.get("read_banner"):
            out["banner"] = s.recv(4096).decode(errors="replace")[:200]
        else:
            ctx = ssl.create_default_context(cafile=a.get("ca"))
            if a.get("sni") is None:
                ctx.check_hostname = False
            try:
                t = ctx.wrap_socket(s, server_hostname=a.get("sni"))
                out["tls"] = "ok"
                t.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (a["path"], a.get("sni") or a["host"])).encode())
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                out["body"] = data.decode(errors="replace")[:2000]
            except (ssl.SSLError, OSError) as exc:
                out["tls"] = "failed: %s" % exc
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(out))
"""


@attrs.frozen
class Ask:
    """One request a test sends through the proxy."""

    host: str
    port: int
    mode: str = "connect"  # connect | http
    sni: str | None = ""  # "" = the host; None = no SNI (IP literals)
    path: str = "/token"
    plain: str = ""  # bytes to send inside the tunnel instead of TLS (a TLS-less CONNECT)
    read_banner: bool = False  # read what the server says first (SSH)

    def argument(self, proxy_host: str, proxy_port: int, ca: str | None) -> str:
        return json.dumps(
            {
                "proxy_host": proxy_host,
                "proxy_port": proxy_port,
                "host": self.host,
                "port": self.port,
                "mode": self.mode,
                "sni": self.host if self.sni == "" else self.sni,
                "path": self.path,
                "plain": self.plain,
                "read_banner": self.read_banner,
                "ca": ca,
            }
        )


@attrs.frozen
class Answer:
    status: int | None
    tls: str | None
    body: str
    banner: str
    error: str

    @classmethod
    def parse(cls, text: str) -> Answer:
        data = json.loads(text.strip().splitlines()[-1])
        return cls(data["status"], data["tls"], data["body"], data["banner"], data["error"])

    def got_through(self, token: str) -> bool:
        """The request reached the server behind the proxy: its token, or the SSH banner came back."""
        return (bool(token) and token in self.body) or self.banner.startswith("SSH-")


# ---------------------------------------------------------------- the proxy's log
def log_lines(text: str) -> list[dict[str, Any]]:
    """The proxy's JSON lines; a line that is not a JSON object fails the check (the log must stay parseable)."""
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ConformanceFailure(f"proxy log line {number} is not JSON: {line[:200]}") from None
        if not isinstance(entry, dict):
            raise ConformanceFailure(f"proxy log line {number} is not a JSON object: {line[:200]}")
        lines.append(entry)
    return lines


LOG_FIELDS = ("time", "sandbox", "decision", "client", "method", "host", "port", "status", "bytes_in", "bytes_out")


def check_log_shape(entries: Iterable[Mapping[str, Any]], sandbox: str) -> None:
    for entry in entries:
        missing = [f for f in LOG_FIELDS if f not in entry]
        if missing:
            raise ConformanceFailure(f"proxy log line lacks {missing}: {entry}")
        if entry["sandbox"] != sandbox or entry["decision"] not in (ALLOWED, DENIED):
            raise ConformanceFailure(
                f"proxy log line has sandbox {entry['sandbox']!r} / decision {entry['decision']!r}: {entry}"
            )


def decisions_for(entries: Iterable[Mapping[str, Any]], host: str, port: int) -> set[str]:
    return {e["decision"] for e in entries if e.get("host") == host and str(e.get("port")) == str(port)}


def check_decision(ask: Ask, expected: str, answer: Answer, token: str, logged: set[str]) -> None:
    """The proxy decided as the tier says: allowed requests got through (and were logged allowed), denied ones
    did not (and were logged denied)."""
    through = answer.got_through(token)
    what = f"{ask.mode.upper()} {ask.host}:{ask.port}" + (f" (SNI {ask.sni})" if ask.sni else "")
    if expected == ALLOWED and not through:
        raise ConformanceFailure(f"{what}: the tier allows it but it did not get through: {answer}")
    if expected == DENIED and through:
        raise ConformanceFailure(
            f"{what}: the tier denies it but it got through (status {answer.status}, tls {answer.tls})"
        )
    if expected not in logged:
        raise ConformanceFailure(f"{what}: no '{expected}' line in the proxy's log (found: {sorted(logged)})")
