"""How `run` starts each agent CLI inside a sandbox: its command line and the settings it needs there (pure).

With the key gateway (compilers/gateway.py) an agent gets, per provider it uses, a base URL pointing at the gateway
and a placeholder key; how each CLI is told differs (facts of the versions we install, docs/agents.md):

- Claude Code: ANTHROPIC_BASE_URL (plain http works) and a placeholder ANTHROPIC_API_KEY;
- Codex: its built-in OpenAI provider cannot be redirected, so a provider of ours, given with `-c` overrides
  before the user's arguments (base URL, key variable, no WebSocket attempt);
- Gemini CLI: GOOGLE_GEMINI_BASE_URL and a placeholder GEMINI_API_KEY (the image's system settings select API-key
  authentication, /etc/gemini-cli/settings.json);
- aider (litellm): ANTHROPIC_BASE_URL, OPENAI_API_BASE, GEMINI_API_BASE and placeholders;
- Cursor's agent cannot be redirected (it trades its key for session tokens): it keeps its key inside.

Also, for every run, settings that keep an unattended agent quiet and inside the sandbox (no update checks, no
telemetry to hosts the tier does not list). Nothing here is a secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from .compilers.gateway import PLACEHOLDER, base_url
from .images import Catalog, Provider

SHELL = "shell"

# Per agent: settings for every run (no update checks, no telemetry: an unattended agent in a sandbox).
QUIET: dict[str, tuple[tuple[str, str], ...]] = {
    "claude": (("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), ("DISABLE_AUTOUPDATER", "1")),
    "gemini": (("GEMINI_CLI_TRUST_WORKSPACE", "true"),),
    "aider": (
        ("AIDER_CHECK_UPDATE", "false"),
        ("AIDER_ANALYTICS", "false"),
        ("AIDER_SHOW_RELEASE_NOTES", "false"),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
    ),
}
CODEX_QUIET = ("-c", "analytics.enabled=false", "-c", "check_for_update_on_startup=false")

# Per (agent, provider): the variables that point the agent at the gateway (value None: the gateway's base URL).
GATEWAY_ENV: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {
    # The gateway forwards to api.anthropic.com unchanged: Claude Code may treat it as first party (else it turns
    # off what only Anthropic's own API offers; docs/agents.md). An internal switch of Claude Code 2.1.
    ("claude", "anthropic"): (
        ("ANTHROPIC_BASE_URL", None),
        ("ANTHROPIC_API_KEY", PLACEHOLDER),
        ("_CLAUDE_CODE_ASSUME_FIRST_PARTY_BASE_URL", "1"),
    ),
    ("gemini", "gemini"): (("GOOGLE_GEMINI_BASE_URL", None), ("GEMINI_API_KEY", PLACEHOLDER)),
    ("aider", "anthropic"): (("ANTHROPIC_BASE_URL", None), ("ANTHROPIC_API_KEY", PLACEHOLDER)),
    ("aider", "openai"): (("OPENAI_API_BASE", "/v1"), ("OPENAI_API_KEY", PLACEHOLDER)),
    ("aider", "gemini"): (("GEMINI_API_BASE", None), ("GEMINI_API_KEY", PLACEHOLDER)),
    ("codex", "openai"): (("OPENAI_API_KEY", PLACEHOLDER),),
}
CODEX_PROVIDER = "agent-sandbox-gateway"


@attrs.frozen
class AgentLaunch:
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # set in the agent container
    notes: tuple[str, ...] = ()  # shown in the run banner


def codex_provider_args(provider: Provider, url: str) -> tuple[str, ...]:
    """Codex's `-c` overrides for a model provider of ours at `url` (TOML values): its built-in OpenAI provider
    can be neither redirected nor given a key by variable (it wants `codex login`)."""
    table = {
        "name": "agent-sandbox",
        "base_url": url,
        "env_key": provider.key,
        "wire_api": "responses",
        "supports_websockets": False,
    }
    inline = ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
    return ("-c", f'model_provider="{CODEX_PROVIDER}"', "-c", f"model_providers.{CODEX_PROVIDER}={{ {inline} }}")


def launch_for(
    agent: str, args: Sequence[str], catalog: Catalog, gateway: Sequence[Provider] = (), inside: Sequence[str] = ()
) -> AgentLaunch:
    """The command line and settings of `agent` with the user's `args`; `gateway`: the providers whose keys the
    sandbox's gateway holds; `inside`: the key variables forwarded into the agent. `shell` is bash (a login shell
    when given nothing)."""
    if agent == SHELL:
        return AgentLaunch(("bash", *args) if args else ("bash", "-l"))
    entry = catalog.agents[agent]
    env: list[tuple[str, str]] = list(QUIET.get(agent, ()))
    prefix: tuple[str, ...] = CODEX_QUIET if agent == "codex" else ()
    notes: list[str] = []
    for provider in gateway:
        if provider.name not in entry.providers:
            continue
        for name, value in GATEWAY_ENV.get((agent, provider.name), ()):
            env.append((name, base_url(provider) + (value or "") if value in (None, "/v1") else value))
        if agent == "codex":
            prefix += codex_provider_args(provider, base_url(provider) + "/v1")
    if agent == "codex" and not any(p.name == "openai" for p in gateway):
        openai = catalog.providers.get("openai")
        if openai is not None and openai.key in inside:  # the key inside: the real API, with that key
            prefix += codex_provider_args(openai, f"https://{openai.host}/v1")
    if entry.keys:
        notes.append(f"{agent} cannot use the key gateway: {', '.join(entry.keys)} is inside the sandbox if set")
    return AgentLaunch((entry.binary, *prefix, *args), tuple(env), tuple(notes))
