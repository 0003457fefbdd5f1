"""The agent CLIs at work: `agent-sandbox run AGENT -- <one request>` in a strict sandbox completes one request
through the egress proxy against our stub of the provider's API (the providers' real names, resolved by the
proxy to our server), and prints the stub's reply.

Twice per agent: with the key gateway (the default: the key stays in the proxy, the stub sees it, the agent
container never has it) and with --keys-inside (the key forwarded into the agent by name).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from typing import Any

import pytest

from agent_sandbox import images
from agent_sandbox.cli.run import image_agents
from agent_sandbox.conformance.session import Session
from agent_sandbox.sandbox import new_name

from . import testnet

PROMPT = "Reply with one word."
# Per agent: the arguments of one non-interactive request, and the key variable of its provider.
AGENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "claude": (("-p", PROMPT), "ANTHROPIC_API_KEY"),
    "codex": (
        ("exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", PROMPT),
        "OPENAI_API_KEY",
    ),
    "gemini": (("-p", PROMPT, "--model", "gemini-2.5-flash"), "GEMINI_API_KEY"),
    "aider": (
        ("--model", "anthropic/claude-sonnet-4-5", "--message", PROMPT, "--yes-always", "--no-git", "--no-pretty"),
        "ANTHROPIC_API_KEY",
    ),
}


def run_agent(
    session: Session, internet: testnet.Internet, agent: str, key: str, *extra: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    args, var = AGENTS[agent]
    name = new_name(f"as-agent-{agent}")
    hosts = [a for name_, address in internet.provider_hosts() for a in ("--proxy-host", f"{name_}={address}")]
    argv = [
        sys.executable,
        "-m",
        "agent_sandbox.cli",
        "run",
        "--tier",
        "strict",
        "--name",
        name,
        "--engine",
        session.engine.name,
        "--image",
        session.image,
        "--workspace",
        str(session.new_workspace(f"agent-{agent}")),
        "--ca-bundle",
        str(internet.ca),
        "--outbound-network",
        internet.network,
        *hosts,
        *extra,
        agent,
        "--",
        *args,
    ]
    env = {**session.host_env(), var: key, "AGENT_SANDBOX_STATE": str(session.base / "agent-state")}
    done = subprocess.run(argv, env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=300)
    return done, name


def provider_requests(internet: testnet.Internet, since: int) -> list[dict[str, Any]]:
    return [e for e in internet.requests()[since:] if e.get("route", "internet") not in ("internet", "unknown")]


def held_agents(session: Session) -> list[str]:
    held = image_agents(session.engine, session.image)
    return [a for a in AGENTS if a in held]


@pytest.mark.parametrize("mode", ["gateway", "keys-inside"])
@pytest.mark.parametrize("agent", list(AGENTS))
def test_the_agent_completes_a_request_through_the_proxy(agent, mode, session, internet):
    if agent not in held_agents(session):
        pytest.skip(f"{session.image} does not hold {agent} (its labels say)")
    key = f"sk-real-{agent}-{secrets.token_hex(10)}"
    before = len(internet.requests())
    done, name = run_agent(session, internet, agent, key, *(["--keys-inside"] if mode == "keys-inside" else []))
    assert done.returncode == 0 and testnet.REPLY in done.stdout + done.stderr, (
        f"{agent} ({mode}) exit {done.returncode}\nstdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-2500:]}"
    )
    requests = provider_requests(internet, before)
    assert requests, f"{agent} printed the reply but the stub saw no API request"
    credentials = {
        v
        for e in requests
        for k, v in (e.get("headers") or {}).items()
        if k.lower() in ("x-api-key", "authorization", "x-goog-api-key")
    }
    assert any(key in value for value in credentials), f"the provider never saw the real key: {credentials}"
    banner = done.stderr
    if mode == "gateway":
        assert "held by the key gateway" in banner, banner
    else:
        assert "WARNING" in banner and "inside the sandbox" in banner, banner
    log = (session.base / "agent-state" / "sandboxes" / name / "proxy" / "egress.jsonl").read_text()
    decisions = [json.loads(line) for line in log.splitlines()]
    assert any(d["decision"] == "allowed" for d in decisions), f"no allowed request in the proxy's log: {decisions}"


def test_cursor_says_it_keeps_its_key_inside():
    catalog = images.load_catalog()
    assert catalog.agents["cursor"].keys == ("CURSOR_API_KEY",) and not catalog.agents["cursor"].providers
