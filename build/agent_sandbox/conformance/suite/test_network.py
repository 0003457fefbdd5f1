"""Network: paranoid has loopback only; a proxied tier (strict) reaches no other host until the egress proxy
ships; an open tier (standard, trusted) reaches our own 'outside' HTTP server. No real internet host is used."""

from __future__ import annotations

import pytest

from agent_sandbox import conformance, egress
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import OutsideServer
from agent_sandbox.model import NetworkMode

pytestmark = [pytest.mark.area("network"), pytest.mark.container]


def test_interfaces_are_as_the_tier_says(expected: Expectations, probe: Probe) -> None:
    conformance.check_interfaces(expected, probe.interfaces())


def test_outside_host_reachable_only_on_an_open_network(
    expected: Expectations, probe: Probe, request: pytest.FixtureRequest, python3: None
) -> None:
    if expected.network is NetworkMode.NONE:
        reached = {"(no interface but lo)": False}
        conformance.check_interfaces(expected, probe.interfaces())
    else:
        outside: OutsideServer = request.getfixturevalue("outside")
        reached = {}
        for addr in outside.addresses:  # an open tier needs one route; a proxied one must fail on every address
            reached[addr] = probe.fetch_token(addr, outside.port, outside.token)
            if reached[addr] and expected.network is NetworkMode.OPEN:
                break
    conformance.check_outside_reach(expected, reached)


def test_proxied_tier_points_at_the_egress_proxy(expected: Expectations, probe: Probe) -> None:
    env = probe.environment()
    if expected.network is NetworkMode.PROXIED:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            assert env.get(name) == egress.PROXY_URL, f"${name} = {env.get(name)!r}"
    else:
        assert "HTTP_PROXY" not in env and "https_proxy" not in env
