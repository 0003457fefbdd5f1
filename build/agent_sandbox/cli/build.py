"""`agent-sandbox build`: build an image (images/<image>/image.toml) with the Nix or the Debian backend."""

from __future__ import annotations

import click

BACKENDS = ("nix", "debian")


def _agents(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(a.strip() for a in value.split(",") if a.strip())


@click.command()
@click.argument("image", default="agent-sandbox-devcontainer")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="debian",
    show_default=True,
    help="nix: `nix build` of flake.nix (needs nixpkgs reachable); debian: mmdebstrap + podman.",
)
@click.option("--agents", default=None, help="Comma-separated agents to install instead of the image's (e.g. claude,codex).")
@click.option("--tier", default=None, help="Tier for the image's devcontainer.metadata label instead of the image's.")
@click.option("--dry-run", is_flag=True, help="Print what would be built (for nix: the exact command) and stop.")
def build(image: str, backend: str, agents: str | None, tier: str | None, dry_run: bool) -> None:
    """Build IMAGE (default: agent-sandbox-devcontainer)."""
    agent_list = _agents(agents)
    if backend == "nix":
        from ..backends.nix import build_nix

        result = build_nix(image, agents=agent_list, tier=tier, dry_run=dry_run)
    else:
        from ..backends.debian import build_debian  # imported here: it pulls in the container engine code

        result = build_debian(image, agents=agent_list, tier=tier, dry_run=dry_run)
    summary = getattr(result, "summary", None)
    click.echo(summary() if callable(summary) else str(result))
