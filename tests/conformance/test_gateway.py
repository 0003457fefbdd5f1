"""The key gateway: API keys stay in the sandbox's proxy, never in the agent container.

The providers' real API names are resolved by the test proxy to our own stub of their APIs (testnet.py,
provider.py), which logs the credentials it receives. A weakened gateway (no header stripping, open to the
proxy's other networks) and a weakened run (the key inside) must each be caught.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent_sandbox import images, profiles, runtime
from agent_sandbox.agents import launch_for
from agent_sandbox.compilers import gateway
from agent_sandbox.conformance import ConformanceFailure
from agent_sandbox.conformance.session import Session
from agent_sandbox.egress import PROXY_HOST

from . import testnet
from .testnet import Egress, start_egress

KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")


def real_keys() -> dict[str, str]:
    """Keys the stub will recognise as 'real' (never the placeholder, never a real provider's)."""
    return {var: f"sk-real-{var.split('_')[0].lower()}-{secrets.token_hex(12)}" for var in KEY_VARS}


def start_gateway_box(
    session: Session, internet: testnet.Internet, label: str, keys: dict[str, str], **tweaks: Any
) -> Egress:
    """A strict sandbox whose gateway holds `keys`, with the agent settings `run claude` gives (the placeholder)."""
    profile = profiles.load_profile("strict")
    catalog = images.load_catalog()
    providers = gateway.served(profile, catalog)
    tweaks.setdefault("extra_env", launch_for("claude", (), catalog, providers).env)
    return start_egress(
        session,
        internet,
        profile,
        f"gw-{label}",
        proxy_hosts=internet.provider_hosts(),
        gateway=providers,
        keys={p.key: keys[p.key] for p in providers},
        **tweaks,
    )


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return real_keys()


@pytest.fixture(scope="session")
def gateway_box(session: Session, internet: testnet.Internet, keys: dict[str, str]) -> Iterator[Egress]:
    yield start_gateway_box(session, internet, "main", keys)


PROVIDERS = {p.name: p for p in images.load_catalog().providers.values()}
# One request per provider, at its gateway port, the way its agents send it (with a forged credential).
REQUESTS = {
    "anthropic": ("/v1/messages", {"x-api-key": "sk-forged-by-the-agent"}),
    "openai": ("/v1/chat/completions", {"Authorization": "Bearer sk-forged-by-the-agent"}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": "sk-forged-by-the-agent"}),
}
BODY = '{"model": "stub-model", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}'


def post(box: Egress, url: str, headers: dict[str, str], body: str = BODY) -> tuple[int, str]:
    flags = " ".join(f"-H {json.dumps(f'{k}: {v}')}" for k, v in headers.items())
    result = box.host.run(
        f"curl -sS -o /tmp/out -w '%%{{http_code}}' {flags} -H 'content-type: application/json' "
        f"--data %s --max-time 60 %s; echo; cat /tmp/out",
        body,
        url,
    )
    code, _, text = result.stdout.partition("\n")
    return int(code or 0), text


def stub_saw(internet: testnet.Internet, since: int, header: str) -> list[str]:
    """The values of `header` in the provider stub's requests after the first `since` log lines."""
    values = []
    for entry in internet.requests()[since:]:
        for name, value in (entry.get("headers") or {}).items():
            if name.lower() == header.lower():
                values.append(value)
    return values


def check_gateway_request(box: Egress, provider: str, keys: dict[str, str]) -> None:
    """A request at the gateway with a forged key reaches the provider with the real key, and only that."""
    p = PROVIDERS[provider]
    path, forged = REQUESTS[provider]
    before = len(box.internet.requests())
    code, text = post(box, gateway.base_url(p) + path, forged)
    if code != 200:
        raise ConformanceFailure(f"{provider}: the gateway answered {code}: {text[:300]}")
    real = f"{p.prefix}{keys[p.key]}"
    seen = stub_saw(box.internet, before, p.header)
    if seen != [real]:
        raise ConformanceFailure(f"{provider}: the provider received {seen!r}, not exactly the real key")
    hosts = stub_saw(box.internet, before, "host")
    if hosts != [p.host]:
        raise ConformanceFailure(f"{provider}: the provider was asked for Host {hosts!r}, not {p.host}")
    others = [
        v
        for h in gateway.CREDENTIAL_HEADERS
        if h.lower() != p.header.lower()
        for v in stub_saw(box.internet, before, h)
    ]
    if others:
        raise ConformanceFailure(f"{provider}: credentials the agent sent were passed on: {others}")


@pytest.mark.parametrize("provider", list(REQUESTS))
def test_the_gateway_replaces_any_key_with_the_real_one(provider, gateway_box, keys):
    check_gateway_request(gateway_box, provider, keys)


def test_the_gateway_serves_only_the_providers_api(gateway_box, keys):
    before = len(gateway_box.internet.requests())
    code, _ = post(gateway_box, gateway.base_url(PROVIDERS["anthropic"]) + "/token", {})
    assert code == 403 and not gateway_box.internet.requests()[before:]
    code, _ = post(gateway_box, gateway.base_url(PROVIDERS["gemini"]) + "/v1beta/models/x:generateContent?key=sk-q", {})
    assert code == 403, "a key in the query string would be passed on beside ours"


def find_key(box: Egress, keys: dict[str, str]) -> list[str]:
    """Every place in the agent container where one of the real keys shows: environment of every process,
    command lines, files (home, /tmp, /workspace, /etc, /run), the container's configuration."""
    pattern = "|".join(re.escape(k) for k in keys.values())
    script = (
        "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; tr '\\0' ' ' < $p/cmdline "
        '2>/dev/null; echo; done | grep -E -c -- "$1"; '
        'grep -r -l -E -- "$1" /home /tmp /workspace /etc /run /var/tmp 2>/dev/null; true'
    )
    result = box.host.run("sh -c %s _ %s", script, pattern)
    found = [line for line in result.stdout.splitlines() if line.strip() and line.strip() != "0"]
    config = json.dumps(box.box.inspect())
    found += [f"container config: {var}" for var, value in keys.items() if value in config]
    return found


def check_no_key_inside(box: Egress, keys: dict[str, str]) -> None:
    found = find_key(box, keys)
    if found:
        raise ConformanceFailure(f"a real key is inside the agent container: {found}")


def check_exfiltration_sends_the_placeholder(box: Egress, keys: dict[str, str]) -> None:
    """What a process in the sandbox can send to an allowed host is its environment's key: the placeholder."""
    before_log = len(box.log())
    before = len(box.internet.requests())
    box.host.run(
        'curl -sS -o /dev/null --max-time 30 -H "x-api-key: ${ANTHROPIC_API_KEY:-none}" '
        "https://api.anthropic.com/v1/exfiltrate"
    )
    sent = stub_saw(box.internet, before, "x-api-key")
    leaked = [v for v in sent if v in keys.values()]
    if leaked:
        raise ConformanceFailure(f"a process in the sandbox sent the real key to an allowed host: {leaked}")
    attempts = [e for e in box.log()[before_log:] if e.get("host") == "api.anthropic.com"]
    if not attempts:
        raise ConformanceFailure("the attempt is not in the proxy's log")


def test_no_key_anywhere_in_the_agent_container(gateway_box, keys):
    check_no_key_inside(gateway_box, keys)


def test_a_process_that_sends_its_key_out_sends_the_placeholder(gateway_box, keys):
    check_exfiltration_sends_the_placeholder(gateway_box, keys)


def test_streams_arrive_as_they_are_sent_and_are_not_cut(gateway_box):
    """Server-sent events through the gateway come chunk by chunk; a quiet stream is not cut at a timeout."""
    url = gateway.base_url(PROVIDERS["anthropic"]) + "/v1/slow-stream?chunks=3&gap=35"
    script = r"""
import json, sys, time, urllib.request
req = urllib.request.Request(sys.argv[1], data=b"{}", headers={"content-type": "application/json"})
arrivals = []
with urllib.request.urlopen(req, timeout=120) as resp:
    for line in resp:
        if line.startswith(b"data:"):
            arrivals.append([json.loads(line[5:])["sent"], time.time()])
print(json.dumps(arrivals))
"""
    result = gateway_box.host.run("env NO_PROXY=%s python3 -c %s %s", PROXY_HOST, script, url)
    assert result.rc == 0, result.stderr
    arrivals = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(arrivals) == 3, f"the stream was cut: {arrivals}"
    # each chunk arrives within a second of being sent (clocks: the same host), not all at the end
    assert all(received - sent < 1.5 for sent, received in arrivals), arrivals


# ---------------------------------------------------------------- weakened gateways and runs
def _no_stripping(text: str) -> str:
    kept = [line for line in text.splitlines() if not line.startswith("request_header_access ")]
    assert len(kept) < len(text.splitlines())
    return "\n".join(kept) + "\n"


def _open_to_all(text: str) -> str:
    assert "http_access deny !from_sandbox" in text
    return text.replace("http_access deny !from_sandbox", "# (weakened: any client)")


def neighbour_request(box: Egress, internet: testnet.Internet, keys: dict[str, str]) -> None:
    """A container on the proxy's routed network (not the sandbox's) asks the gateway: refused, key unsent."""
    address = runtime.address_on(box.box.engine, box.box.plan.proxy or "", internet.network)
    before = len(internet.requests())
    url = f"http://{address}:{PROVIDERS['anthropic'].port}/v1/messages"
    box.box.engine.run(
        [
            "run",
            "--rm",
            f"--network={internet.network}",
            "--entrypoint=curl",
            testnet.IMAGE,
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "20",
            "--data",
            BODY,
            url,
        ],
        check=False,
    )
    sent = stub_saw(internet, before, "x-api-key")
    if any(v == keys["ANTHROPIC_API_KEY"] for v in sent):
        raise ConformanceFailure("a container outside the sandbox got the real key sent for it by the gateway")


def test_the_gateway_serves_its_own_sandbox_only(gateway_box, internet, keys):
    neighbour_request(gateway_box, internet, keys)


WEAKENED: dict[str, tuple[dict[str, Any], Callable[[Egress, dict[str, str]], None]]] = {
    "gateway-without-header-stripping": (
        {"proxy_conf_adjust": _no_stripping},
        lambda box, k: check_gateway_request(box, "anthropic", k),
    ),
    "gateway-open-to-the-routed-network": (
        {"proxy_conf_adjust": _open_to_all},
        lambda box, k: neighbour_request(box, box.internet, k),
    ),
}


@pytest.mark.parametrize("weakening", list(WEAKENED))
def test_a_weakened_gateway_is_caught(weakening, session, internet, keys, gateway_box):
    tweaks, check = WEAKENED[weakening]
    check(gateway_box, keys)  # holds on the real gateway ...
    weak = start_gateway_box(session, internet, f"weak-{weakening[:18]}", keys, **tweaks)
    try:
        with pytest.raises(ConformanceFailure):
            check(weak, keys)  # ... and fails on the weakened one
    finally:
        weak.box.remove()


def test_a_key_passed_inside_is_caught(session, internet, keys):
    """The weakened run: the key in the agent container (what --keys-inside does), the checks above see it."""
    box = start_gateway_box(
        session, internet, "weak-inside", keys, extra_env=(("ANTHROPIC_API_KEY", keys["ANTHROPIC_API_KEY"]),)
    )
    try:
        with pytest.raises(ConformanceFailure):
            check_no_key_inside(box, keys)
        with pytest.raises(ConformanceFailure):
            check_exfiltration_sends_the_placeholder(box, keys)
    finally:
        box.box.remove()
