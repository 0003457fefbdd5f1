"""`agent-sandbox audit`: read, summarise and learn from sandboxes' decisions.

\b
agent-sandbox audit [ID...] [--log FILE]... [--since T] [--denied] [--json] [--follow] [--fail-on-deny]
agent-sandbox audit summary [ID...] [--log FILE]... [--json]
agent-sandbox audit suggest ID --tier strict [-o FILE]
agent-sandbox audit metrics [ID...] [--log FILE]... [-o FILE]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click

from .. import audit as trail
from .. import profiles
from ..errors import InputError, Location
from ..fsutil import atomic_write
from ..sandbox import state_root

MODES = ("summary", "suggest", "metrics")


def selected(ids: tuple[str, ...], logs: tuple[Path, ...]) -> list[trail.Source]:
    sources = [
        trail.Source(
            path, {"sandbox": path.parent.parent.name if path.parent.name in ("proxy", "leash-log") else path.stem}
        )
        for path in logs
    ]
    for path in logs:
        if not path.is_file():
            raise InputError("no such log file", Location(path))
    if ids or not logs:
        sources += trail.sandbox_sources(state_root(), ids)
    if not sources:
        raise InputError(f"no sandbox logs under {state_root() / 'sandboxes'}; name one with --log FILE", None)
    return sources


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1)
@click.option("--log", "logs", multiple=True, type=click.Path(path_type=Path), help="A proxy or Leash log file.")
@click.option("--since", "since_text", default=None, help="Only events since (2026-11-29T21:00:00Z, 30m, 2h).")
@click.option("--denied", is_flag=True, help="Only denials.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event (per line), for machines.")
@click.option("--follow", is_flag=True, help="Keep reading as the logs grow (rotation included).")
@click.option("--fail-on-deny", is_flag=True, help="Exit 1 if any event was denied (for CI).")
@click.option(
    "--tier", default=None, help="suggest: the profile the suggestion inherits (a tier name or a profile file)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="suggest, metrics: write here (atomically) instead of printing.",
)
def audit(
    words: tuple[str, ...],
    logs: tuple[Path, ...],
    since_text: str | None,
    denied: bool,
    as_json: bool,
    follow: bool,
    fail_on_deny: bool,
    tier: str | None,
    output: Path | None,
) -> None:
    """Every decision of sandboxes (by ID) or of log files, as audit lines; `summary`, `suggest`, `metrics`."""
    mode = words[0] if words and words[0] in MODES else "lines"
    ids = words[1:] if mode != "lines" else words
    stats = trail.Stats()
    sources = selected(ids, logs)
    moment = trail.since(since_text) if since_text else None

    def events() -> Iterator[trail.Event]:
        stream = trail.follow(sources, stats) if follow else trail.read(sources, stats)
        for event in stream:
            if moment is not None and not trail.after(event, moment):
                continue
            if denied and event.decision != trail.DENY:
                continue
            yield event

    if mode == "suggest":
        if len(ids) != 1 or not tier:
            raise InputError("audit suggest takes one sandbox ID and --tier PROFILE", Location("audit suggest"))
        base = profiles.load_profile(tier)
        text = trail.suggest(events(), base, name=f"{base.name}-{ids[0]}")
        emit(text, output)
        return
    if mode == "metrics":
        emit(trail.metrics(events()), output)
        return
    seen_denial = False
    if mode == "summary":
        plain = not (follow or moment or denied)  # nothing to filter: the streaming counter's fast path
        result = trail.summarise(sources, stats) if plain else trail.summary(events())
        seen_denial = bool(result["total"].get(trail.DENY))
        if as_json:
            for row in result["by_agent"]:
                click.echo(json.dumps(row))
        else:
            click.echo(render_summary(result))
    else:
        for event in events():
            seen_denial = seen_denial or event.decision == trail.DENY
            click.echo(json.dumps(event.to_json()) if as_json else trail.line(event))
    if stats.garbled or stats.unknown:
        click.echo(
            f"agent-sandbox audit: {stats.lines} lines, {stats.events} events, {stats.garbled} garbled and "
            f"{stats.unknown} of unknown shape skipped",
            err=True,
        )
    if fail_on_deny and seen_denial:
        raise click.exceptions.Exit(1)


def emit(text: str, output: Path | None) -> None:
    if output is not None:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def render_summary(result: dict[str, object]) -> str:
    total = result["total"]
    assert isinstance(total, dict)
    lines = [
        f"decisions: {total.get(trail.ALLOW, 0)} allowed, {total.get(trail.DENY, 0)} denied",
        "",
        f"{'agent':<24} {'class':<11} {'decision':<8} {'count':>7}",
    ]
    for row in result["by_agent"]:  # type: ignore[attr-defined]
        lines.append(f"{row['agent']:<24} {row['class']:<11} {row['decision']:<8} {row['count']:>7}")
    top = result["top_denied"]
    if top:
        lines += ["", "most denied targets:"]
        lines += [f"  {row['count']:>6}  {row['class']:<11} {row['target']}" for row in top]  # type: ignore[attr-defined]
    return "\n".join(lines)
