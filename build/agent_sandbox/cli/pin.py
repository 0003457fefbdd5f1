"""`agent-sandbox pin [NAME...] [--version V]` and `pin --check`: the pinned downloads of images/sources.toml."""

from __future__ import annotations

from pathlib import Path

import click

from .. import pin as pins
from ..paths import images_dir


@click.command()
@click.argument("names", nargs=-1)
@click.option("--version", default=None, help="Move NAME to this version (the version in its URLs is replaced).")
@click.option("--check", "check_only", is_flag=True, help="Download every pin again; fail on a changed hash.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The sources file (default: images/sources.toml).",
)
def pin(names: tuple[str, ...], version: str | None, check_only: bool, path: Path | None) -> None:
    """Hash the pinned downloads with nix-prefetch-url and write them into images/sources.toml (comments and order
    kept); with --check, verify that every URL still serves what is pinned."""
    path = path or images_dir() / "sources.toml"
    if check_only:
        for line in pins.check(path, names):
            click.echo(line)
        return
    changes = pins.pin(path, names, version=version)
    click.echo("\n".join(changes) if changes else f"{path}: every pin is current")
