"""`agent-sandbox doctor [--json]`: what this host can enforce, per layer and tier, and how to fix the rest."""

from __future__ import annotations

import json

import click

from .. import doctor as checks
from ..engine import ENGINES, detect_engine
from ..errors import EnvironmentProblem


@click.command()
@click.option("--engine", type=click.Choice(ENGINES), default=None, help="Container engine (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Facts and findings as JSON.")
def doctor(engine: str | None, as_json: bool) -> None:
    """What this host can enforce: engine, cgroups, seccomp, user namespaces, BPF LSM, Leash, the egress proxy's
    networks, compose; exits 1 when a layer is missing."""
    try:
        eng = detect_engine(engine)
    except EnvironmentProblem:
        eng = None
    facts = checks.gather(eng)
    findings = checks.assess(facts)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "facts": facts.to_json(),
                    "findings": [
                        {"layer": f.layer, "status": f.status, "what": f.what, "fix": f.fix, "tiers": list(f.tiers)}
                        for f in findings
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(checks.render(facts, findings), nl=False)
    if any(f.status == checks.MISSING for f in findings if f.layer != "Leash"):
        raise click.exceptions.Exit(1)
