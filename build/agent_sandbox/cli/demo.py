"""`agent-sandbox demo`: the main job of `make sandbox` — a strict sandbox at work.

With a terminal: the agent in a strict sandbox on this repository (Claude Code when ANTHROPIC_API_KEY is set,
else a shell). Without one: a scripted demonstration in a strict sandbox — one allowlisted request passes the
egress proxy, one host outside the tier is refused, no name resolves inside — followed by the proxy's own log
lines for it. Exits non-zero when the sandbox did not behave as the tier says.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import attrs
import click

from ..engine import ENGINES, detect_engine
from ..sandbox import new_name, sandbox_state_dir
from .run import DEFAULT_IMAGE, RunOptions, image_agents, run_agent

ALLOWED_URL = "https://pypi.org/simple/pip/"  # pypi.org:443 is in every proxied tier
REFUSED_URL = "https://example.com/"  # in none

SCRIPT = f"""\
show() {{ printf '\\n$ %s\\n' "$*"; }}
show curl {ALLOWED_URL} '   # pypi.org:443 is in the strict tier'
code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 20 {ALLOWED_URL} 2>&1); echo "HTTP $code"
case $code in 200|30?) allowed=ok ;; *) allowed=failed ;; esac
show curl {REFUSED_URL} '   # example.com is not'
out=$(curl -sS -o /dev/null --max-time 20 {REFUSED_URL} 2>&1); echo "$out"
case $out in *407*|*"CONNECT tunnel failed"*) refused=ok ;; *) refused=failed ;; esac
show getent hosts example.com '   # no DNS inside: only the proxy resolves names'
if getent hosts example.com; then dns=failed; else echo '(no answer)'; dns=ok; fi
printf '\\nallowed request: %s, refused request: %s, no DNS: %s\\n' "$allowed" "$refused" "$dns"
[ "$allowed$refused$dns" = okokok ]
"""


def audit_line(entry: dict[str, object]) -> str:
    """One proxy log entry the way the design's audit trail prints it."""
    verdict = "ALLOW" if entry.get("decision") == "allowed" else "DENY "
    reason = f" ({entry['reason']})" if entry.get("reason") not in (None, "", "-") else ""
    return (
        f"{entry.get('time')} {verdict} network {entry.get('method')} {entry.get('host')}:{entry.get('port')}"
        f"{reason} [proxy of {entry.get('sandbox')}]"
    )


@click.command()
@click.option("--engine", type=click.Choice(ENGINES), default=None, help="Container engine (default: detect).")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="The agent image.")
@click.option(
    "--workspace",
    type=click.Path(path_type=Path),
    default=None,
    help="Host directory mounted at /workspace (default: the current git repository).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(path_type=Path),
    default=None,
    help="A CA bundle for HTTPS inside (on machines whose HTTPS is intercepted: the host's bundle).",
)
def demo(engine: str | None, image: str, workspace: Path | None, ca_bundle: Path | None) -> None:
    """Put a strict sandbox to work: the agent with a terminal, else a demonstration of its egress proxy."""
    options = RunOptions(tier="strict", workspace=workspace, engine=engine, image=image, ca_bundle=ca_bundle)
    if sys.stdin.isatty() and sys.stdout.isatty():
        held = image_agents(detect_engine(engine), image)
        agent = "claude" if os.environ.get("ANTHROPIC_API_KEY") and "claude" in held else "shell"
        raise click.exceptions.Exit(run_agent(agent, (), options))
    name = new_name("agent-sandbox-demo")
    code = run_agent("shell", ("-c", SCRIPT), attrs.evolve(options, name=name), tty=False)
    log = sandbox_state_dir(name) / "proxy" / "egress.jsonl"
    click.echo(f"\nthe egress proxy's log ({log}):")
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        click.echo("  " + audit_line(json.loads(line)))
    raise click.exceptions.Exit(code)
