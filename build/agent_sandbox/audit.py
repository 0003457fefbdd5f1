"""The audit trail: every sandbox's decisions, from the egress proxy's JSON lines and Leash's events.log (logfmt),
read as one stream of events (pure parsing; reading files and following them at the edge).

A line that is garbled, partial or of a shape we do not know is counted, never a crash. Secrets are masked in every
output: Leash logs the first characters of Authorization headers, a URL may carry `key=`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from .errors import InputError, Location

CLASSES = ("network", "filesystem", "exec", "http", "mcp")
ALLOW, DENY = "allowed", "denied"
MASK = "<masked>"
_SECRET_QUERY = re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature)=)[^&\s\"]*")
_LOGFMT = re.compile(r'([A-Za-z0-9_.:-]+)=("(?:[^"\\]|\\.)*"|[^ ]*)')


@attrs.frozen
class Event:
    time: str  # RFC 3339 as the source wrote it ("" when the source has none: Leash's mcp.call)
    sandbox: str
    agent: str
    klass: str  # network | filesystem | exec | http | mcp
    operation: str  # CONNECT, GET, open:ro, exec, net.send, tools/call ...
    target: str  # host:port, a path, a program, a URL
    decision: str  # allowed | denied
    reason: str = ""
    tier: str = ""
    source: str = ""  # proxy | leash

    def to_json(self) -> dict[str, str]:
        return attrs.asdict(self)


@attrs.define
class Stats:
    lines: int = 0
    events: int = 0
    garbled: int = 0
    unknown: int = 0


def mask(text: str) -> str:
    return _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return bytes(value[1:-1], "utf-8").decode("unicode_escape", errors="replace")
    return value


def _percent(text: str) -> str:
    """The proxy's free-text fields are percent-encoded (%#): decode for people (invalid bytes replaced)."""
    if "%" not in text:
        return text
    from urllib.parse import unquote

    return unquote(text, errors="replace")


# ---------------------------------------------------------------- one line each
def parse_proxy(line: str, *, agent: str = "", tier: str = "") -> Event | None:
    """One line of egress.jsonl; None for a line that is not one (counted by the caller)."""
    data = json.loads(line)
    if not isinstance(data, dict) or data.get("decision") not in (ALLOW, DENY):
        raise ValueError("not a proxy decision")
    host, port, method = (
        _percent(str(data.get("host", "-"))),
        str(data.get("port", "-")),
        _percent(str(data.get("method", "-"))),
    )
    target = f"{host}:{port}" if method == "CONNECT" or port not in ("-", "") else host
    if data.get("url") and method not in ("CONNECT", "-"):
        target = mask(_percent(str(data["url"])))
    reason = str(data.get("reason", ""))
    return Event(
        str(data.get("time", "")),
        str(data.get("sandbox", "")),
        agent,
        "network",
        method,
        target,
        str(data["decision"]),
        "" if reason == "-" else reason,
        tier,
        "proxy",
    )


LEASH_CLASSES = {
    "file.open": "filesystem",
    "proc.exec": "exec",
    "net.send": "network",
    "net.connect": "network",
    "http.request": "http",
    "mcp.call": "mcp",
}


def parse_leash(line: str, *, sandbox: str = "", agent: str = "", tier: str = "") -> Event | None:
    """One line of Leash's events.log (logfmt)."""
    fields = {k: _unquote(v) for k, v in _LOGFMT.findall(line)}
    event = fields.get("event", "")
    decision = fields.get("decision", "")
    base = event.split(":", 1)[0]
    if not event:
        raise ValueError("no event")  # not a Leash line at all: garbled
    if base not in LEASH_CLASSES:
        raise LookupError(event)  # a Leash line of a shape we do not know
    if decision not in (ALLOW, DENY):
        raise ValueError("no decision")
    klass = LEASH_CLASSES[base]
    if klass == "filesystem":
        operation, target = event.removeprefix("file.") if ":" in event else "open", fields.get("path", "")
    elif klass == "exec":
        operation, target = "exec", fields.get("path", "")
    elif klass == "network":
        operation = fields.get("protocol", "tcp")
        target = fields.get("hostname") or fields.get("addr", "")
        if fields.get("hostname") and ":" in fields.get("addr", ""):
            target += ":" + fields["addr"].rsplit(":", 1)[1]
    elif klass == "http":
        operation = fields.get("protocol", "http")
        target = mask(fields.get("addr", "") + fields.get("path", ""))
    else:
        operation, target = fields.get("method", "tools/call"), f"{fields.get('server', '')}/{fields.get('tool', '')}"
    reason = fields.get("error", "")
    return Event(fields.get("time", ""), sandbox, agent, klass, operation, target, decision, reason, tier, "leash")


def parse(line: str, stats: Stats, **meta: str) -> Event | None:
    """Either source, told by its first character; garbled or unknown lines are counted, never raised."""
    stats.lines += 1
    text = line.strip()
    if not text:
        return None
    try:
        event = (
            parse_proxy(text, agent=meta.get("agent", ""), tier=meta.get("tier", ""))
            if text[0] == "{"
            else parse_leash(text, **meta)
        )
    except LookupError:
        stats.unknown += 1
        return None
    except (ValueError, TypeError, UnicodeDecodeError):
        stats.garbled += 1
        return None
    stats.events += 1
    return event


# ---------------------------------------------------------------- sources
@attrs.frozen
class Source:
    path: Path
    meta: Mapping[str, str]  # sandbox, agent, tier (from the sandbox's sandbox.json)


def sandbox_sources(state_root: Path, names: Sequence[str]) -> list[Source]:
    """The logs of sandboxes by name (their state directories), or of every sandbox there."""
    base = state_root / "sandboxes"
    chosen = list(names)
    if not chosen and base.is_dir():
        chosen = sorted(p.name for p in base.iterdir() if p.is_dir())
    out: list[Source] = []
    for name in chosen:
        directory = base / name
        if not directory.is_dir():
            raise InputError(f"no sandbox {name!r} under {base} (its state directory)", Location("ID"))
        meta = {"sandbox": name}
        info = directory / "sandbox.json"
        if info.is_file():
            data = json.loads(info.read_text())
            meta.update({k: str(data[k]) for k in ("agent", "tier") if k in data})
        for log in (directory / "proxy" / "egress.jsonl", directory / "leash-log" / "events.log"):
            if log.is_file():
                out.append(Source(log, meta))
    return out


def read(sources: Iterable[Source], stats: Stats) -> Iterator[Event]:
    for source in sources:
        with source.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                event = parse(line, stats, **source.meta)
                if event is not None:
                    yield event


def follow(sources: Sequence[Source], stats: Stats, *, interval: float = 0.5, stop: Any = None) -> Iterator[Event]:
    """Every event, then those appended later; a file rotated (replaced or truncated) is read again from its start.
    `stop()` returning True ends it (tests); else it runs until interrupted."""
    handles: dict[Path, tuple[IO[str], int]] = {}

    def open_(path: Path) -> tuple[IO[str], int]:
        handle = path.open(encoding="utf-8", errors="replace")
        return handle, os.fstat(handle.fileno()).st_ino

    partial: dict[Path, str] = {}
    while True:
        for source in sources:
            path = source.path
            if path not in handles:
                if not path.exists():
                    continue
                handles[path] = open_(path)
            handle, inode = handles[path]
            try:
                current = path.stat()
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_ino != inode or current.st_size < handle.tell()):
                handle.close()  # rotated: the new file from its start
                handles[path] = open_(path)
                handle, inode = handles[path]
                partial.pop(path, None)
            for chunk in iter(handle.readline, ""):
                text = partial.pop(path, "") + chunk
                if not text.endswith("\n"):
                    partial[path] = text  # a line still being written
                    break
                event = parse(text, stats, **source.meta)
                if event is not None:
                    yield event
        if stop is not None and stop():
            break
        time.sleep(interval)
    for handle, _ in handles.values():
        handle.close()


# ---------------------------------------------------------------- filters and outputs
def since(text: str) -> dt.datetime:
    """`--since`: an RFC 3339 time, or a duration back from now (30s, 10m, 2h, 1d)."""
    found = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if found:
        seconds = int(found.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2)]
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{text!r}: a time (2026-11-29T21:00:00Z) or a duration (30m, 2h)", Location("--since")
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def after(event: Event, moment: dt.datetime) -> bool:
    if not event.time:
        return True
    try:
        return dt.datetime.fromisoformat(event.time.replace("Z", "+00:00")) >= moment
    except ValueError:
        return True


def line(event: Event) -> str:
    """The design's audit line: `2025-01-20T10:15:32Z ALLOW network claude → api.anthropic.com:443 [policy: ...]`."""
    verdict = "ALLOW" if event.decision == ALLOW else "DENY "
    who = event.agent or event.sandbox or "-"
    policy = ", ".join(x for x in (event.tier and f"tier {event.tier}", event.reason, event.source) if x)
    return f"{event.time or '-':24} {verdict} {event.klass:<10} {who} → {mask(event.target)} [policy: {policy}]"


def summary(events: Iterable[Event]) -> dict[str, Any]:
    by_agent: Counter[tuple[str, str, str]] = Counter()
    denied: Counter[tuple[str, str]] = Counter()
    total: Counter[str] = Counter()
    for event in events:
        who = event.agent or event.sandbox
        by_agent[(who, event.klass, event.decision)] += 1
        total[event.decision] += 1
        if event.decision == DENY:
            denied[(event.klass, event.target)] += 1
    return _summary_of(by_agent, denied, total)


# Fast paths of `summarise` for the commonest lines (the proxy's CONNECTs, Leash's file and exec events): what they
# match is exactly what `parse` makes of them; anything else goes through `parse`.
_FAST_PROXY = re.compile(
    r'\{"time":"[^"]*","sandbox":"([^"%]*)","decision":"(allowed|denied)","reason":"[^"]*","client":"[^"]*",'
    r'"method":"CONNECT","host":"([^"%]*)","port":"([0-9]+)"'
)
_FAST_LEASH = re.compile(
    r'(?:time=\S* )?event=(file\.open(?::r[ow])?|proc\.exec) pid=\d+ cgroup=\d+ exe="[^"\\]*" '
    r'path="([^"\\]*)"(?: argc=\d+(?: argv="[^"\\]*")?)? decision=(allowed|denied)'
)


_FAST_HTTP = re.compile(
    r'(?:time=\S* )?event=http\.request protocol=[a-z]+ addr="([^"\\]*)" path="([^"\\]*)" '
    r'decision=(allowed|denied)(?: [a-z_]+=(?:"[^"\\]*"|[^ "]*))*$'
)


def summarise(sources: Iterable[Source], stats: Stats) -> dict[str, Any]:
    """`summary(read(sources))`, streaming and fast: the regular lines are counted by their raw fields (one dict
    update each, no event built), and folded into the summary at the end; the rest goes through `parse`."""
    by_agent: Counter[tuple[str, str, str]] = Counter()
    denied: Counter[tuple[str, str]] = Counter()
    total: Counter[str] = Counter()
    for source in sources:
        default = source.meta.get("agent", "")
        owner = default or source.meta.get("sandbox", "")
        proxy_counts: dict[tuple[str | Any, ...], int] = {}
        leash_counts: dict[tuple[str | Any, ...], int] = {}
        http_counts: dict[tuple[str | Any, ...], int] = {}
        with source.path.open(encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                if raw[:1] == "{":
                    fast = _FAST_PROXY.match(raw)
                    if fast is not None:
                        key = fast.groups()
                        proxy_counts[key] = proxy_counts.get(key, 0) + 1
                        continue
                else:
                    fast = _FAST_LEASH.match(raw)
                    if fast is not None and raw[fast.end() :].strip() == "":
                        key = fast.groups()
                        leash_counts[key] = leash_counts.get(key, 0) + 1
                        continue
                    if "event=http.request" in raw:
                        http = _FAST_HTTP.fullmatch(raw.strip())
                        if http is not None:
                            key = http.groups()
                            http_counts[key] = http_counts.get(key, 0) + 1
                            continue
                slow = parse(raw, stats, **source.meta)
                if slow is not None:
                    _count(by_agent, denied, total, slow.agent or slow.sandbox, slow.klass, slow.decision, slow.target)
        for (sandbox, decision, host, port), n in proxy_counts.items():
            _count(by_agent, denied, total, default or sandbox, "network", decision, f"{host}:{port}", n)
        for (event, path, decision), n in leash_counts.items():
            _count(by_agent, denied, total, owner, "exec" if event == "proc.exec" else "filesystem", decision, path, n)
        for (addr, path, decision), n in http_counts.items():
            _count(by_agent, denied, total, owner, "http", decision, mask(addr + path), n)
        fast_lines = sum(proxy_counts.values()) + sum(leash_counts.values()) + sum(http_counts.values())
        stats.lines += fast_lines
        stats.events += fast_lines
    return _summary_of(by_agent, denied, total)


def _count(
    by_agent: Counter[tuple[str, str, str]],
    denied: Counter[tuple[str, str]],
    total: Counter[str],
    who: str,
    klass: str,
    decision: str,
    target: str,
    n: int = 1,
) -> None:
    by_agent[(who, klass, decision)] += n
    total[decision] += n
    if decision == DENY:
        denied[(klass, target)] += n


def _summary_of(
    by_agent: Counter[tuple[str, str, str]], denied: Counter[tuple[str, str]], total: Counter[str]
) -> dict[str, Any]:
    return {
        "total": dict(total),
        "by_agent": [{"agent": a, "class": c, "decision": d, "count": n} for (a, c, d), n in sorted(by_agent.items())],
        "top_denied": [
            {"class": c, "target": mask(t), "count": n}
            for (c, t), n in sorted(denied.items(), key=lambda item: (-item[1], item[0]))[:20]
        ],
    }


def metrics(events: Iterable[Event]) -> str:
    """Prometheus text format: decisions per sandbox, class and decision (a node exporter textfile)."""
    counts: Counter[tuple[str, str, str]] = Counter((e.sandbox, e.klass, e.decision) for e in events)
    lines = [
        "# HELP agent_sandbox_decisions_total Decisions of a sandbox's enforcement layers.",
        "# TYPE agent_sandbox_decisions_total counter",
    ]
    for (sandbox, klass, decision), count in sorted(counts.items()):
        lines.append(
            f'agent_sandbox_decisions_total{{sandbox="{sandbox}",class="{klass}",decision="{decision}"}} {count}'
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- learning mode
# Proxy refusals a profile entry can lift; the others (a private address, a fronted SNI, TLS-less bytes, a client
# outside the sandbox) are not allowlist questions.
LIFTABLE = ("not_allowlisted", "")


def suggest(events: Iterable[Event], base: Any, *, name: str) -> str:
    """A profile that inherits `base` (a Profile) and allows exactly the denied targets observed — never broader:
    no wildcard, no directory, nothing the base denies on purpose (those are listed, commented out)."""
    network: Counter[str] = Counter()
    reads: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    programs: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    deny_paths = [rule for rule in base.filesystem.deny]
    deny_hosts = {str(rule) for rule in base.network.deny if not rule.is_any}
    for event in events:
        if event.decision != DENY:
            continue
        if event.klass == "network" and event.source == "proxy" and event.reason in LIFTABLE:
            host, _, port = event.target.rpartition(":")
            if not port.isdigit() or not host or host == "-":
                continue
            (kept if event.target in deny_hosts or host in deny_hosts else network)[event.target] += 1
        elif event.klass == "filesystem" and event.target.startswith("/"):
            if any(rule.covers(event.target) for rule in deny_paths):
                kept[event.target] += 1
            elif event.operation.endswith("rw"):
                writes[event.target] += 1
            else:
                reads[event.target] += 1
        elif event.klass == "exec" and event.target.startswith("/"):
            if any(event.target.endswith("/" + p) or event.target == p for p in base.exec.deny):
                kept[event.target] += 1
            else:
                programs[event.target] += 1
    lines = [
        f"# Suggested by `agent-sandbox audit suggest` from what profile {base.name} denied: exactly the targets",
        "# observed, nothing broader. Review every line before you use it (`agent-sandbox policy check`).",
        f"name: {name}",
        f"inherits: {base.name}",
        f"description: {base.name} plus what one run needed",
    ]

    def section(title: str, key: str, items: Counter[str], what: str) -> None:
        if items:
            lines.append(f"{title}:")
            lines.append(f"  {key}:")
            lines.extend(f'    - "{target}"  # {n} denied {what}' for target, n in sorted(items.items()))

    section("network", "allow+", network, "request(s)")
    if reads or writes:
        lines.append("filesystem:")
        if writes:
            lines.append("  allow+:")
            lines += [f'    - "{t}"  # {n} denied write(s)' for t, n in sorted(writes.items())]
        if reads:
            lines.append("  read+:")
            lines += [f'    - "{t}"  # {n} denied read(s)' for t, n in sorted(reads.items())]
    if programs:
        lines.append("exec:")
        lines.append("  allow+:")
        lines += [f'    - "{t}"  # {n} denied exec(s)' for t, n in sorted(programs.items())]
    if kept:
        lines.append(f"# Denied on purpose by {base.name} (not suggested):")
        lines += [f"#   {t} ({n})" for t, n in sorted(kept.items())]
    if not (network or reads or writes or programs):
        lines.append(f"# Nothing to add: every denial was one {base.name} makes on purpose, or none happened.")
    return "\n".join(lines) + "\n"
