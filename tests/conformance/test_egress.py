"""The egress proxy: a proxied sandbox reaches exactly its tier's host:port pairs, through its own Squid, and
nothing else — each known bypass of other tools is a case here, and each claim has a weakened sandbox (a proxy
config without the rule, an agent on a routed network) that its check must catch.

Everything outside is ours (testnet.py): servers on a routed network of TEST-NET addresses, under names the test
profile below allowlists. The expected decision of every request comes from conformance.egress.decide, a model of
the proxy written from the profile alone.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from agent_sandbox import egress, profiles, runtime
from agent_sandbox.conformance import ConformanceFailure
from agent_sandbox.conformance import egress as proxy
from agent_sandbox.conformance.session import Session
from agent_sandbox.model import Profile

from . import testnet
from .testnet import Egress, start_egress

# The test profile: strict's shape with our own hosts. `{main}` is the main test server's address (a listed IP).
PROFILE = """\
name: egress-test
inherits: strict
description: the conformance suite's allowlist of its own test internet
network:
  allow:
    - "web.stub.test:443"
    - "web.stub.test:80"
    - "git.stub.test:22"
    - "*.wild.test:443"
    - "api.provider.test:443"
    - "plain.stub.test:443"
    - "rebind.stub.test:3128"
    - "meta.stub.test:80"
    - "{main}:443"
"""


@pytest.fixture(scope="session")
def egress_profile(session: Session, internet: testnet.Internet) -> Profile:
    path = session.base / "egress-test.yaml"
    path.write_text(PROFILE.format(main=internet.main))
    return profiles.load_profile(path)


@pytest.fixture(scope="session")
def sandbox_on_internet(session: Session, internet: testnet.Internet, egress_profile: Profile) -> Egress:
    return start_egress(session, internet, egress_profile, "main")


# ---------------------------------------------------------------- the proxy's decisions
def _main(internet: testnet.Internet) -> str:
    return internet.main


def _other(internet: testnet.Internet) -> str:
    return internet.other


@attrs.frozen
class Case:
    """A request, the marker that proves it reached its destination, and where to look for it."""

    ask: Callable[[testnet.Internet], proxy.Ask]
    sni: str | None = ""  # for the model: "" = the host


PLAIN_GET = "GET /token HTTP/1.0\r\nHost: plain.stub.test\r\n\r\n"
CASES: dict[str, Case] = {
    "https-listed": Case(lambda n: proxy.Ask("web.stub.test", 443)),
    "http-listed": Case(lambda n: proxy.Ask("web.stub.test", 80, mode="http")),
    "ssh-listed": Case(lambda n: proxy.Ask("git.stub.test", 22, read_banner=True), sni=None),
    "wildcard-label": Case(lambda n: proxy.Ask("api.wild.test", 443)),
    "wildcard-two-labels": Case(lambda n: proxy.Ask("deep.api.wild.test", 443)),
    "ip-literal-listed": Case(lambda n: proxy.Ask(n.main, 443, sni=None), sni=None),
    "other-host": Case(lambda n: proxy.Ask("other.stub.test", 80, mode="http")),
    "other-port": Case(lambda n: proxy.Ask("web.stub.test", 8080, mode="http")),
    "other-port-connect": Case(
        lambda n: proxy.Ask("web.stub.test", 8080, plain="GET /token HTTP/1.0\r\n\r\n"), sni=None
    ),
    "ip-literal": Case(lambda n: proxy.Ask(n.other, 80, mode="http")),
    "label-boundary": Case(lambda n: proxy.Ask("badwild.test", 443)),
    "bare-suffix": Case(lambda n: proxy.Ask("wild.test", 443)),
    "fronted-sni": Case(lambda n: proxy.Ask("web.stub.test", 443, sni="other.stub.test"), sni="other.stub.test"),
    "no-sni": Case(lambda n: proxy.Ask("web.stub.test", 443, sni=None), sni=None),
    "tls-less-tunnel": Case(lambda n: proxy.Ask("plain.stub.test", 443, plain=PLAIN_GET), sni=None),
    "rebinding-loopback": Case(
        lambda n: proxy.Ask("rebind.stub.test", 3128, plain=f"GET http://{egress.READINESS_NAME}/ HTTP/1.0\r\n\r\n"),
        sni=None,
    ),
    "cloud-metadata": Case(lambda n: proxy.Ask("meta.stub.test", 80, mode="http")),
}


def expected_decision(sandbox: Egress, case: Case, ask: proxy.Ask) -> str:
    decision = proxy.decide(sandbox.profile, ask.host, ask.port, sandbox.addresses(ask.host))
    if decision == proxy.ALLOWED and ask.mode == "connect" and proxy.needs_tls(ask.port):
        # TLS ports: the SNI must be the CONNECT host (no SNI only for a listed IP literal), and TLS it must be
        sni = ask.host if case.sni == "" else case.sni
        if ask.plain or (sni != ask.host and not (sni is None and re.fullmatch(r"[0-9.]+", ask.host))):
            return proxy.DENIED
    return decision


def reached(answer: proxy.Answer, ask: proxy.Ask, token: str) -> bool:
    if ask.plain and ask.host.startswith("rebind."):
        return answer.status == 200 and "HTTP/" in answer.banner  # something behind the proxy's loopback answered
    return answer.got_through(token) or (bool(ask.plain) and token in answer.banner)


def check_case(sandbox: Egress, name: str) -> None:
    case = CASES[name]
    ask = case.ask(sandbox.internet)
    expected = expected_decision(sandbox, case, ask)
    before = len(sandbox.log())
    answer = sandbox.ask(ask)
    entries = sandbox.log()[before:]
    proxy.check_log_shape(entries, sandbox.box.name)
    through = reached(answer, ask, sandbox.internet.token)
    what = f"{name}: {ask.mode.upper()} {ask.host}:{ask.port}"
    if expected == proxy.ALLOWED and not through:
        raise ConformanceFailure(f"{what}: the tier allows it but it did not get through: {answer}")
    if expected == proxy.DENIED and through:
        raise ConformanceFailure(f"{what}: the tier denies it but it got through: {answer}")
    if expected not in proxy.decisions_for(entries, ask.host, ask.port):
        raise ConformanceFailure(f"{what}: expected a '{expected}' line in the proxy's log, found {entries}")


@pytest.mark.parametrize("name", list(CASES))
def test_the_proxy_decides_as_the_tier_says(name, sandbox_on_internet):
    check_case(sandbox_on_internet, name)


# Each weakening: (the cases whose check it must break, how the squid.conf is weakened)
def _replace(old: str, new: str) -> Callable[[str], str]:
    def weaken(text: str) -> str:
        assert old in text, f"the weakening does not apply: {old!r} is not in squid.conf"
        return text.replace(old, new)

    return weaken


def _drop_lines(pattern: str) -> Callable[[str], str]:
    def weaken(text: str) -> str:
        kept = [line for line in text.splitlines() if not re.search(pattern, line)]
        assert len(kept) < len(text.splitlines()), f"the weakening does not apply: no line matches {pattern!r}"
        return "\n".join(kept) + "\n"

    return weaken


WEAKENED_PROXIES = {
    "wildcards-as-plain-suffixes": (
        ("label-boundary", "bare-suffix"),
        _replace(r"^([a-z0-9_-]+\.)+wild\.test$", r"wild\.test$"),
    ),
    "ports-ignored": (("other-port", "other-port-connect"), lambda text: re.sub(r"all-of port_\d+ ", "all-of ", text)),
    "no-private-address-rule": (
        ("rebinding-loopback", "cloud-metadata"),
        _drop_lines(r"^http_access deny .*dst_nonpublic"),
    ),
    "no-sni-check": (
        ("fronted-sni", "no-sni"),
        _replace("ssl_bump splice step2 sni_is_host", "ssl_bump splice step2 all"),
    ),
    "no-peeking": (("tls-less-tunnel",), _replace("ssl_bump peek step1", "ssl_bump splice step1 all")),
    "any-destination": (
        ("other-host", "ip-literal"),
        _replace("http_access allow !CONNECT allowlisted mark_allowed", "http_access allow !CONNECT mark_allowed"),
    ),
}


@pytest.mark.parametrize("weakening", list(WEAKENED_PROXIES))
def test_a_weakened_proxy_is_caught(weakening, session, internet, egress_profile, sandbox_on_internet):
    cases, weaken = WEAKENED_PROXIES[weakening]
    for name in cases:  # the checks hold on the real proxy ...
        check_case(sandbox_on_internet, name)
    weak = start_egress(session, internet, egress_profile, f"weak-{weakening[:20]}", proxy_conf_adjust=weaken)
    try:
        for name in cases:  # ... and fail on the weakened one
            with pytest.raises(ConformanceFailure):
                check_case(weak, name)
    finally:
        weak.box.remove()


# ---------------------------------------------------------------- the agent's network: proxy or nothing
# Inside the agent: the system resolver, then a raw query to every name server of resolv.conf, every gateway and
# the first address of every connected network (where the engine's DNS server listens), so that a resolver left
# reachable but unlisted in resolv.conf is caught too.
DNS_PROBE = r"""
import json, random, socket, struct, sys
def query(server, name):
    q = struct.pack(">HHHHHH", random.randint(0, 65535), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(q, (server, 53))
        data = s.recv(512)
        return struct.unpack(">H", data[6:8])[0] > 0
    except OSError:
        return False
name = sys.argv[1]
servers = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
routes = [r.split() for r in open("/proc/net/route").read().splitlines()[1:]]
gateways = {socket.inet_ntoa(struct.pack("<L", int(r[2], 16))) for r in routes if r[2] != "00000000"}
# the engine's DNS server listens on the first address of a network (no route names it on an internal network)
gateways |= {socket.inet_ntoa(struct.pack(">L", struct.unpack(">L", struct.pack("<L", int(r[1], 16)))[0] + 1))
             for r in routes if r[1] != "00000000"}
try:
    resolved = bool(socket.getaddrinfo(name, 443))
except OSError:
    resolved = False
answers = {s: query(s, name) for s in set(servers) | gateways}
print(json.dumps({"getaddrinfo": resolved, "servers": answers}))
"""
OUTSIDE_NAME_CANDIDATES = ("pypi.org", "registry.npmjs.org", "deb.debian.org")


def dns_answers(host: Any, name: str) -> dict[str, Any]:
    result = host.run("timeout 30 python3 -c %s %s", DNS_PROBE, name)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def outside_name(session: Session, internet: testnet.Internet) -> str:
    """A name the engine's DNS resolves for a container on a routed network (so that a leak would show): the
    control of the DNS checks. If none resolves, the DNS checks could not see a leak: fail, don't pass."""
    for name in OUTSIDE_NAME_CANDIDATES:
        result = session.engine.run(
            ["run", "--rm", f"--network={internet.network}", "--entrypoint=getent", testnet.IMAGE, "hosts", name],
            check=False,
        )
        if result.ok and result.out.strip():
            return name
    pytest.fail(
        f"none of {OUTSIDE_NAME_CANDIDATES} resolves on a routed network here: the DNS checks could not "
        "tell a leak from a host without DNS",
        pytrace=False,
    )


def check_no_dns(sandbox: Egress, name: str) -> None:
    got = dns_answers(sandbox.host, name)
    leaks = [k for k, v in got["servers"].items() if v] + (["getaddrinfo"] if got["getaddrinfo"] else [])
    if leaks:
        raise ConformanceFailure(f"the agent resolved an outside name ({name}) through {leaks}")


def check_no_ipv6(sandbox: Egress) -> None:
    text = sandbox.host.run("cat /proc/net/if_inet6").stdout.strip()
    if text:
        raise ConformanceFailure(f"IPv6 is up inside the agent container: {text.splitlines()}")


def check_no_direct_route(sandbox: Egress) -> None:
    for address in (sandbox.internet.main, sandbox.internet.other):
        if sandbox.ask_direct(address):
            raise ConformanceFailure(f"the agent reached {address}:80 directly, without the proxy")


def test_no_dns_out_of_the_sandbox(sandbox_on_internet, outside_name):
    check_no_dns(sandbox_on_internet, outside_name)


def test_no_ipv6_inside(sandbox_on_internet):
    check_no_ipv6(sandbox_on_internet)


def test_no_route_but_the_proxy(sandbox_on_internet):
    check_no_direct_route(sandbox_on_internet)


# The sandbox network made an ordinary, routed one (with the engine's DNS), and the agent left with the engine's
# resolver: what a sandbox without its own internal network would be.
ROUTED = {
    "network_adjust": lambda argv: [a for a in argv if a not in ("--internal", "--disable-dns")],
    "adjust": runtime.without_flags("--dns="),
}


def _also_on_the_internet(sandbox: Egress) -> None:
    """The agent connected to the routed network as well (docker keeps its bridges apart, so a routed sandbox
    network alone would not reach our test internet there)."""
    sandbox.box.engine.run(["network", "connect", sandbox.internet.network, sandbox.box.name])


WEAKENED_NETWORKS: dict[str, tuple[Callable[..., None], dict[str, Any], Callable[[Egress], None] | None]] = {
    "sandbox-on-a-routed-network-resolves": (lambda s, name: check_no_dns(s, name), ROUTED, None),
    "agent-also-on-a-routed-network-connects": (lambda s, name: check_no_direct_route(s), {}, _also_on_the_internet),
    "ipv6-switched-on": (
        lambda s, name: check_no_ipv6(s),
        {
            "adjust": lambda flags: runtime.replace_flag(
                flags, "--sysctl=net.ipv6", "--sysctl=net.ipv6.conf.all.disable_ipv6=0"
            )
        },
        None,
    ),
}


@pytest.mark.parametrize("weakening", list(WEAKENED_NETWORKS))
def test_a_weakened_network_is_caught(weakening, session, internet, egress_profile, outside_name):
    check, tweaks, after_start = WEAKENED_NETWORKS[weakening]
    weak = start_egress(session, internet, egress_profile, f"weak-{weakening[:20]}", **tweaks)
    if after_start is not None:
        after_start(weak)
    try:
        with pytest.raises(ConformanceFailure):
            check(weak, outside_name)
    finally:
        weak.box.remove()


def test_podman_sandbox_network_has_no_dns_server(session, internet, egress_profile, outside_name):
    """podman's aardvark-dns answers outside names on internal networks: the sandbox network has it switched off.
    With it on (and the agent pointed at it), the check sees the leak."""
    if session.engine.name != "podman":
        pytest.skip(
            "aardvark-dns is podman's; docker's internal networks have no DNS path out (the routed-network "
            "weakening above shows the check can see a leak there)"
        )
    for label, adjust in (("listed", runtime.without_flags("--dns=")), ("unlisted", None)):
        # listed: resolv.conf names aardvark; unlisted: resolv.conf says 127.0.0.1, aardvark still answers
        weak = start_egress(
            session,
            internet,
            egress_profile,
            f"weak-aardvark-{label}",
            network_adjust=lambda argv: [a for a in argv if a != "--disable-dns"],
            adjust=adjust,
        )
        try:
            with pytest.raises(ConformanceFailure, match="resolved an outside name"):
                check_no_dns(weak, outside_name)
        finally:
            weak.box.remove()


# ---------------------------------------------------------------- every client in the image goes through the proxy
SSH = "ssh -i /tmp/ssh_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"
CLIENTS = {
    "curl": ("curl -fsS https://web.stub.test/token", "{token}"),
    "git-https": ("git ls-remote https://web.stub.test/git/repo.git", "refs/heads/main"),
    "git-ssh": (f"env GIT_SSH_COMMAND={shlex.quote(SSH)} git ls-remote git@git.stub.test:repo.git", "refs/heads/main"),
    "npm": ("npm view agent-sandbox-probe version --registry https://web.stub.test/npm/", "1.0.0"),
    "pip": (
        "/opt/aider/bin/python -m pip index versions agent-sandbox-probe --index-url https://web.stub.test/simple/",
        "1.0.0",
    ),
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_reaches_the_internet_through_the_proxy(client, sandbox_on_internet):
    sandbox = sandbox_on_internet
    command, want = CLIENTS[client]
    if client == "git-ssh":
        key = sandbox.internet.ssh_key.read_text()
        sandbox.host.run("umask 077 && printf %s %s > /tmp/ssh_key", "%s", key)
    if client == "pip" and sandbox.host.run("test -x /opt/aider/bin/python").rc != 0:
        pytest.skip("the image has no aider venv with pip (the Debian image has)")
    before = len(sandbox.log())
    result = sandbox.host.run(f"cd /tmp && timeout 120 {command}")
    assert result.rc == 0 and want.format(token=sandbox.internet.token) in result.stdout, (
        f"{client}: rc {result.rc}\n{result.stdout[-500:]}\n{result.stderr[-800:]}"
    )
    through = [e for e in sandbox.log()[before:] if e["decision"] == "allowed"]
    assert through, f"{client} reached the server, but not through the proxy (no allowed line in its log)"


# ---------------------------------------------------------------- the log
def test_the_log_is_owner_only_and_outlives_the_sandbox(session, internet, egress_profile):
    sandbox = start_egress(session, internet, egress_profile, "log")
    sandbox.ask(proxy.Ask("web.stub.test", 443))
    sandbox.box.remove()
    log = sandbox.box.plan.log_file
    entries = proxy.log_lines(log.read_text())
    assert entries and {e["sandbox"] for e in entries} == {sandbox.box.name}
    for path in (log, log.parent, sandbox.box.state_dir):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others ({mode:o})"
