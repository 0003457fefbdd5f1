"""How `run` starts each agent CLI inside a sandbox: its command line and the settings it needs there (pure).

Agents that bring a sandbox of their own are configured so that it does not fail inside ours; what each one gets
and why is in docs/agents.md. Nothing here is a secret: API keys are forwarded by name at exec time (cli/run.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .images import load_catalog

SHELL = "shell"


@attrs.frozen
class AgentLaunch:
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # set in the agent container
    notes: tuple[str, ...] = ()  # shown in the run banner


def launch_for(agent: str, args: Sequence[str]) -> AgentLaunch:
    """The command line of `agent` with the user's `args`; `shell` is bash (a login shell when given nothing)."""
    if agent == SHELL:
        return AgentLaunch(("bash", *args) if args else ("bash", "-l"))
    return AgentLaunch((load_catalog().agents[agent].binary, *args))
