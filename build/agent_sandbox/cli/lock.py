"""`agent-sandbox lock [IMAGE] [--update [NAME...]]` and `lock --check`: an image's lock (images/<image>/lock.toml)."""

from __future__ import annotations

import platform
from collections import Counter

import click

from ..errors import ChecksFailed, InputError, Location

DEFAULT_IMAGE = "agent-sandbox-devcontainer"


def split_args(args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """IMAGE first when the first argument names an image (a name under images/, a directory, an image.toml);
    the rest are components."""
    from ..images import all_images, image_path

    if args and (args[0] in all_images() or "/" in args[0] or args[0].endswith(".toml")):
        if not image_path(args[0]).exists():
            raise InputError(f"no image description at {image_path(args[0])}", Location("IMAGE"))
        return args[0], args[1:]
    return DEFAULT_IMAGE, args


@click.command()
@click.argument("args", nargs=-1, metavar="[IMAGE] [NAME[=VERSION]...]")
@click.option(
    "--update",
    is_flag=True,
    help="Resolve the named components again (all of them when none is named): "
    "agents by name, node, npm, debian; NAME=VERSION picks a version instead of the newest.",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Ask the registries whether they still serve exactly what the lock says; change nothing.",
)
@click.option(
    "--no-debian", is_flag=True, help="With --check: leave the Debian mirror out (it needs root and mmdebstrap)."
)
def lock(args: tuple[str, ...], update: bool, check_only: bool, no_debian: bool) -> None:
    """Create or refresh IMAGE's lock (default: agent-sandbox-devcontainer): the exact version and the registry's
    integrity hash of every agent CLI, Node and npm, every PyPI package of the Python agents and every Debian
    package of the base layer. Prints what changed (old → new per component)."""
    from .. import lock as lk
    from .. import lockresolve as lr
    from ..backends.debian_plan import debian_arch
    from ..images import load_catalog, load_image

    image_ref, names = split_args(args)
    if names and not update:
        raise InputError(
            "component names go with --update (e.g. `agent-sandbox lock --update claude`)", Location(names[0])
        )
    if check_only and update:
        raise InputError("--check changes nothing: leave out --update", Location("--check"))
    catalog = load_catalog()
    image = load_image(image_ref, catalog)
    path = lk.lock_path(image.path)
    old = lk.read_lock(path, image.name)
    arch = debian_arch(platform.machine())
    registries = lr.Registries()
    if check_only:
        if old is None:
            raise ChecksFailed(f"{path}: no lock (run `agent-sandbox lock {image.name}`)")
        missing = lr.missing(image, catalog, old, arch)
        findings = lr.check_lock(old, image, catalog, registries=registries, arch=arch, debian=not no_debian)
        bad = [f for f in findings if not f.ok]
        counts = Counter(f.component for f in findings if f.ok)
        for component, count in counts.items():
            click.echo(
                f"ok  {component}: {count} {'artifact' if count == 1 else 'artifacts'} as locked"
                if not component.startswith("debian/")
                else f"ok  {component}: as locked"
            )
        for f in bad:
            click.echo(f"BAD {f.component}: {f.message}")
        for component in missing:
            click.echo(f"BAD {component}: not in the lock (run `agent-sandbox lock {image.name}`)")
        if bad or missing:
            raise ChecksFailed(
                f"{path}: {len(bad) + len(missing)} components differ from what the registries serve or are missing"
            )
        return
    known = lr.lock_components(image, catalog)
    updates = lr.parse_updates(names, known) if names else {}
    new = lr.make_lock(
        image,
        catalog,
        old,
        update=updates,
        update_all=update and not names,
        resolver=registries,
        arch=arch,
        report=lambda line: click.echo(line, err=True),
    )
    changes = lk.diff(old, new)
    if old is not None and lk.is_written(new, path):
        click.echo(f"{path}: up to date")
        return
    lk.write_lock(new, path)
    click.echo(f"{'wrote' if old is None else 'updated'} {path}")
    for line in changes:
        click.echo(f"  {line}")
