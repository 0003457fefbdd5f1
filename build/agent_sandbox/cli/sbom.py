"""`agent-sandbox sbom IMAGE-REF [-o FILE]`: an SPDX SBOM of a built image, checked against its lock."""

from __future__ import annotations

import platform
from pathlib import Path

import click


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the SPDX JSON (default: <name>.spdx.json in the current directory).",
)
@click.option(
    "--image-description",
    default=None,
    metavar="NAME",
    help="images/<NAME>/image.toml describes the image (default: the reference's repository name); its "
    "lock is what the SBOM is checked against.",
)
@click.option("--engine", default=None, help="podman or docker (default: detect).")
def sbom(ref: str, output: Path | None, image_description: str | None, engine: str | None) -> None:
    """Write an SPDX SBOM of image REF (made by Syft: `pip install 'agent-sandbox[sbom]'`), and check that it lists
    the versions of the image's lock (images/<image>/lock.toml) for a Debian-built image."""
    from .. import lock as lk
    from .. import sbom as sb
    from ..backends.debian import recorded_versions
    from ..backends.debian_plan import debian_arch
    from ..engine import detect_engine
    from ..errors import EnvironmentProblem
    from ..images import all_images, load_image
    from ..labels import LABEL_BACKEND

    eng = detect_engine(engine)
    if not eng.image_exists(ref):
        raise EnvironmentProblem(f"no image {ref} in {eng.name}'s store (build it first)")
    repo = ref.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    output = output or Path(f"{repo}.spdx.json")
    doc = sb.write_sbom(eng, ref, output)
    listed = sb.packages(doc)
    click.echo(f"wrote {output}: {len(listed)} packages")
    name = image_description or (repo if repo in all_images() else None)
    labels = eng.image_labels(ref)
    if name is None or labels.get(LABEL_BACKEND) != "debian":
        click.echo("not checked against a lock (not a Debian-built image of images/)")
        return
    image = load_image(name)
    lock = lk.read_lock(lk.lock_path(image.path), image.name)
    if lock is None:
        raise EnvironmentProblem(f"{image.path.parent} has no lock.toml: nothing to check the SBOM against")
    sb.check_sbom(doc, lock, recorded_versions(eng, ref), debian_arch(platform.machine()))
    click.echo(f"the SBOM lists the versions of {lk.lock_path(image.path)}")
