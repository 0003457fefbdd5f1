"""The audit trail: every event shape of both sources, garbage counted (never a crash), follow across append and
rotation, secrets masked, and a suggested profile that allows exactly what was denied (the proxy model and the
real Cedar engine agree)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cedar_model import CedarPolicy
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_sandbox import audit, profiles
from agent_sandbox.compilers.leash import compile_leash
from agent_sandbox.conformance import egress as proxy

# Lines as the sources write them: the proxy's (from real sandboxes of ours), Leash's (its documented shapes and
# the real samples in ../shared/notes/leash.md).
PROXY_DENIED = (
    '{"time":"2026-11-29T21:15:33.680Z","sandbox":"box","decision":"denied","reason":"not_allowlisted",'
    '"client":"10.89.4.2","method":"CONNECT","host":"example.com","port":"443","url":"example.com:443",'
    '"sni":"-","status":407,"squid_status":"TCP_DENIED","server":"-","bytes_in":0,"bytes_out":0,'
    '"duration_ms":0,"tls":"-","error":"ERR_ACCESS_DENIED","error_detail":"-"}'
)
PROXY_ALLOWED = PROXY_DENIED.replace('"denied","reason":"not_allowlisted"', '"allowed","reason":"-"').replace(
    "example.com", "pypi.org"
)
PROXY_HTTP = (
    '{"time":"2026-11-29T21:16:00.000Z","sandbox":"box","decision":"allowed","reason":"-","client":"x",'
    '"method":"GET","host":"plain.test","port":"80","url":"http://plain.test/p%3Fx?key=sk-secret-123",'
    '"sni":"-","status":200,"squid_status":"TCP_MISS","server":"1.2.3.4","bytes_in":1,"bytes_out":2,'
    '"duration_ms":3,"tls":"-","error":"-","error_detail":"-"}'
)
LEASH = {
    "file.open:ro": 'time=2025-10-07T18:01:00Z event=file.open:ro pid=1 cgroup=2 exe="cat" path="/etc/hosts" '
    "decision=allowed",
    "file.open:rw": 'time=2025-10-07T18:01:01Z event=file.open:rw pid=1 cgroup=2 exe="sh" path="/home/vscode/.bashrc" '
    "decision=denied",
    "proc.exec": 'time=2025-10-07T18:20:36Z event=proc.exec pid=273173 cgroup=17412 exe="bash" path="/usr/bin/date" '
    'argc=1 argv="/usr/bin/date" decision=denied',
    "net.send": 'time=2025-10-07T18:02:00Z event=net.send pid=1 cgroup=2 exe="curl" protocol=tcp '
    'addr="104.18.0.1:443" hostname="api.anthropic.com" decision=allowed',
    "http.request": 'time=2025-10-07T18:02:40Z event=http.request protocol=https addr="bf2e.com" path="/" '
    'decision=denied status=403 error="connection denied by security policy"',
    "http.request+auth": 'time=2025-10-07T18:02:41Z event=http.request protocol=https addr="api.x.com" '
    'path="/v1?token=abc" decision=allowed status=200 auth="Bearer sk-ant-api03-AAAA"',
    "mcp.call": 'event=mcp.call server="files" method="tools/call" tool="delete" id=7 status=403 outcome=blocked '
    "decision=denied duration_ms=2",
}
CLASSES = {
    "file.open:ro": "filesystem",
    "file.open:rw": "filesystem",
    "proc.exec": "exec",
    "net.send": "network",
    "http.request": "http",
    "http.request+auth": "http",
    "mcp.call": "mcp",
}


@pytest.mark.parametrize("shape", list(LEASH))
def test_every_leash_event_shape(shape):
    stats = audit.Stats()
    event = audit.parse(LEASH[shape], stats, sandbox="box", agent="claude", tier="strict")
    assert event is not None and stats.events == 1
    assert event.klass == CLASSES[shape] and event.decision in (audit.ALLOW, audit.DENY) and event.target
    assert event.source == "leash" and event.agent == "claude"
    line = audit.line(event)
    assert "sk-ant" not in line and "token=abc" not in line


@pytest.mark.parametrize(
    ("text", "target", "decision"),
    [
        (PROXY_DENIED, "example.com:443", "denied"),
        (PROXY_ALLOWED, "pypi.org:443", "allowed"),
        (PROXY_HTTP, "http://plain.test/p?x?key=" + audit.MASK, "allowed"),
    ],
)
def test_proxy_lines(text, target, decision):
    event = audit.parse(text, audit.Stats())
    assert event is not None and (event.target, event.decision, event.klass) == (target, decision, "network")
    assert "sk-secret" not in audit.line(event) and "sk-secret" not in json.dumps(event.to_json())


def test_the_design_line_format():
    event = audit.parse(PROXY_DENIED, audit.Stats(), agent="claude", tier="strict")
    assert audit.line(event) == (
        "2026-11-29T21:15:33.680Z DENY  network    claude → example.com:443 "
        "[policy: tier strict, not_allowlisted, proxy]"
    )


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.binary().map(lambda b: b.decode("latin-1")),
        st.sampled_from([PROXY_DENIED, *LEASH.values()]).flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),
    )
)
def test_garbage_never_crashes_and_is_counted(text):
    stats = audit.Stats()
    event = audit.parse(text, stats)
    assert stats.lines == 1
    assert (event is not None) == (stats.events == 1)
    assert stats.events + stats.garbled + stats.unknown == (1 if text.strip() else 0)


def test_follow_keeps_up_with_appends_and_rotation(tmp_path: Path):
    log = tmp_path / "egress.jsonl"
    log.write_text(PROXY_DENIED + "\n")
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        for event in audit.follow([audit.Source(log, {})], audit.Stats(), interval=0.05, stop=done.is_set):
            seen.append(event.target)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        wait_for(lambda: len(seen) == 1)
        with log.open("a") as handle:  # an append, written in two parts (a line in progress)
            handle.write(PROXY_ALLOWED[:50])
            handle.flush()
            time.sleep(0.2)
            handle.write(PROXY_ALLOWED[50:] + "\n")
        wait_for(lambda: len(seen) == 2)
        log.rename(tmp_path / "egress.jsonl.1")  # rotation: a new file under the same name
        log.write_text(PROXY_HTTP + "\n")
        wait_for(lambda: len(seen) == 3)
    finally:
        done.set()
        thread.join(5)
    assert seen == ["example.com:443", "pypi.org:443", "http://plain.test/p?x?key=" + audit.MASK]


def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "follow did not see the line"
        time.sleep(0.02)


def test_summary_and_metrics():
    stats = audit.Stats()
    events = [
        e for e in (audit.parse(t, stats, agent="claude") for t in (PROXY_DENIED, PROXY_DENIED, PROXY_ALLOWED)) if e
    ]
    result = audit.summary(events)
    assert result["total"] == {"denied": 2, "allowed": 1}
    assert result["top_denied"][0] == {"class": "network", "target": "example.com:443", "count": 2}
    text = audit.metrics(events)
    assert 'agent_sandbox_decisions_total{sandbox="box",class="network",decision="denied"} 2' in text


def denied(host: str, port: int) -> str:
    return PROXY_DENIED.replace("example.com", host).replace('"port":"443"', f'"port":"{port}"')


def test_a_suggestion_allows_exactly_what_was_denied(tmp_path: Path):
    observed = [("api.example.com", 443), ("db.internal.example", 5432)]
    lines = [denied(h, p) for h, p in observed] + [
        LEASH["file.open:rw"],  # ~/.bashrc: not denied on purpose by strict
        'time=2025-10-07T18:01:02Z event=file.open:ro pid=1 cgroup=2 exe="cat" path="/home/vscode/.ssh/id_rsa" '
        "decision=denied",  # denied on purpose: never suggested
        LEASH["proc.exec"],
    ]
    stats = audit.Stats()
    events = [e for e in (audit.parse(t, stats) for t in lines) if e]
    text = audit.suggest(events, profiles.load_profile("strict"), name="strict-box")
    path = tmp_path / "strict-box.yaml"
    path.write_text(text)
    suggested = profiles.load_profile(path)
    check = subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "policy", "check", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "/home/vscode/.ssh/id_rsa" not in [r.path for r in suggested.filesystem.read + suggested.filesystem.write]
    assert suggested.filesystem.can_write("/home/vscode/.bashrc")
    strict = profiles.load_profile("strict")
    cedar = CedarPolicy(compile_leash(suggested))
    for host, port in observed:  # exactly the observed ...
        assert proxy.decide(suggested, host, port, ("203.0.113.5",)) == proxy.ALLOWED
        assert cedar.can_connect(host, port)
    for host, port in [
        ("api.example.com", 80),
        ("www.example.com", 443),
        ("example.com", 443),
        ("db.internal.example", 5433),
        ("x.api.example.com", 443),
    ]:  # ... and nothing broader
        assert (
            proxy.decide(suggested, host, port, ("203.0.113.5",))
            == proxy.decide(strict, host, port, ("203.0.113.5",))
            == proxy.DENIED
        )
        assert not cedar.can_connect(host, port)


def test_the_cli_reads_a_log_and_fails_on_deny(tmp_path: Path):
    log = tmp_path / "egress.jsonl"
    log.write_text("\n".join([PROXY_DENIED, "not json at all", PROXY_ALLOWED]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "audit", "--log", str(log), "--denied", "--fail-on-deny"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stdout.count("\n") == 1 and "DENY" in done.stdout and "example.com:443" in done.stdout
    assert "1 garbled" in done.stderr
    summary = subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "audit", "summary", "--log", str(log), "--json"],
        capture_output=True,
        text=True,
    )
    assert summary.returncode == 0 and all(json.loads(row) for row in summary.stdout.splitlines())


def test_the_fast_summary_is_the_summary(tmp_path: Path):
    """`audit summary`'s streaming counter (fast paths for the commonest lines) says what summary(read()) says."""
    lines = [
        PROXY_DENIED,
        PROXY_ALLOWED,
        PROXY_HTTP,
        *LEASH.values(),
        "garbage",
        PROXY_DENIED[:40],
        "",
        PROXY_DENIED.replace("example.com", "ex%41mple.com"),
        LEASH["proc.exec"].replace("denied", "allowed"),
    ] * 3
    log = tmp_path / "mixed.log"
    log.write_text("\n".join(lines) + "\n")
    sources = [audit.Source(log, {"sandbox": "box", "agent": "claude"})]
    slow, fast = audit.Stats(), audit.Stats()
    assert audit.summarise(sources, fast) == audit.summary(audit.read(sources, slow))
    assert fast == slow and slow.garbled > 0
