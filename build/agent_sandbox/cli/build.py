"""`agent-sandbox build`: build an image (images/<image>/image.toml) with the Nix or the Debian backend."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import InputError, Location

BACKENDS = ("auto", "nix", "debian")
TAG_REF = re.compile(r"[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")


def choose_backend(requested: str) -> str:
    """`auto`: Nix where it can build (nix installed, nixpkgs reachable), else the Debian backend."""
    if requested != "auto":
        return requested
    from ..backends.nix import nixpkgs_available

    chosen = "nix" if nixpkgs_available() else "debian"
    click.echo(f"backend: {chosen}" + ("" if chosen == "nix" else " (nix cannot fetch nixpkgs here)"), err=True)
    return chosen


def _agents(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(a.strip() for a in value.split(",") if a.strip())


def check_request(image: str, agents: tuple[str, ...] | None, tier: str | None) -> None:
    """Everything a user can get wrong on the command line, checked once for both backends (exit status 2)."""
    from ..images import check_agents, check_user, load_catalog, load_image, load_tier

    catalog = load_catalog()
    desc = load_image(image, catalog)
    if agents is not None:
        if not agents:
            raise InputError(f"name at least one agent; known: {', '.join(catalog.agents)}", Location("--agents"))
        check_agents(agents, catalog, Location("--agents"))
    if tier is not None:
        check_user(desc, load_tier(tier, Location("--tier")), Location("--tier"))


@click.command()
@click.argument("image", default="agent-sandbox-devcontainer")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="nix: `nix build` of flake.nix (needs nixpkgs reachable); debian: mmdebstrap + podman; "
    "auto: nix where it can build, else debian.",
)
@click.option(
    "--agents", default=None, help="Comma-separated agents to install instead of the image's (e.g. claude,codex)."
)
@click.option(
    "--tier",
    default=None,
    help="The tier to build the image for instead of the image's (its devcontainer.metadata label and "
    "default); the Debian backend also takes a profile file.",
)
@click.option("--dry-run", is_flag=True, help="Print what would be built (for nix: the exact command) and stop.")
@click.option(
    "--tag",
    "tag",
    default=None,
    metavar="REF",
    help="Debian backend: tag the image REF (e.g. localhost/my-test:1) instead of localhost/<name>:<tag>.",
)
@click.option(
    "--sbom",
    "sbom",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Debian backend: write the image's SPDX SBOM (Syft) to FILE, checked against the image's lock.",
)
def build(
    image: str, backend: str, agents: str | None, tier: str | None, dry_run: bool, tag: str | None, sbom: Path | None
) -> None:
    """Build IMAGE: a name under images/ or the path of an image directory or image.toml
    (default: agent-sandbox-devcontainer)."""
    from ..backends import BuildOutcome

    agent_list = _agents(agents)
    check_request(image, agent_list, tier)
    result: BuildOutcome
    if tag is not None and not TAG_REF.fullmatch(tag):
        raise InputError(f"{tag!r}: not an image reference (e.g. localhost/name:tag)", Location("--tag"))
    backend = choose_backend(backend)
    if backend == "nix" and (tag is not None or sbom is not None):
        raise InputError(
            "only the Debian backend takes --tag and --sbom (Nix names the image after image.toml; "
            "publish-images.yml attests its SBOM)",
            Location("--tag" if tag is not None else "--sbom"),
        )
    if backend == "nix":
        from ..backends.nix import build_nix

        result = build_nix(image, agents=agent_list, tier=tier, dry_run=dry_run)
    else:
        from ..backends.debian import build_debian  # imported here: it pulls in the container engine code
        from .progress import BuildProgress

        with BuildProgress() as show:  # stopped before the CLI reports an error
            result = build_debian(
                image, agents=agent_list, tier=tier, dry_run=dry_run, progress=show, tag=tag, sbom=sbom
            )
    click.echo(result.summary())
