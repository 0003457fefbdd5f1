"""`agent-sandbox policy ...`: compile, explain and check tiers and user profiles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import bundle, profiles
from ..compilers.devcontainer import devcontainer_json
from ..compilers.explain import explain as explain_profile, render_explanation
from ..compilers.leash import compile_leash
from ..compilers.runargs import run_args
from ..compilers.squid import render_squid
from ..errors import InputError
from ..fsutil import atomic_write
from ..model import NetworkMode, Profile
from ..paths import project_root

TARGETS = ("leash", "run-args", "devcontainer", "squid")


@click.group()
def policy() -> None:
    """Compile, explain and check sandbox tiers (a tier name or a profile file)."""


@policy.command()
@click.argument("profile")
@click.option("--target", type=click.Choice(TARGETS), required=True, help="Which layer to compile for.")
@click.option("--image", default=None, help="Image reference for --target devcontainer.")
@click.option("--workspace", default=None, help="Host directory mounted at /workspace (run-args).")
@click.option("--sandbox", default="sandbox", help="Sandbox name written into the proxy's log lines (squid).")
@click.option("--subnet", default=None, help="The sandbox network's subnet (devcontainer of a proxied tier).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write here (atomically); a proxied tier's devcontainer is a directory (.devcontainer).")
def compile(profile: str, target: str, image: str | None, workspace: str | None, sandbox: str, subnet: str | None,
            output: Path | None) -> None:
    """Compile PROFILE (tier name or YAML file) for one enforcement layer.

    \b
    A proxied tier's devcontainer is Compose-based (the agent, its network and its egress proxy):
      agent-sandbox policy compile strict --target devcontainer -o .devcontainer
    """
    prof = profiles.load_profile(profile)
    if target == "devcontainer" and prof.network.mode is NetworkMode.PROXIED:
        write_devcontainer_dir(prof, image, subnet, output)
        return
    if target == "leash":
        text = compile_leash(prof)
    elif target == "squid":
        text = render_squid(prof, sandbox=sandbox)
    elif target == "run-args":
        text = json.dumps(run_args(prof, workspace=workspace, host_env=dict(os.environ)), indent=2) + "\n"
    else:
        from ..images import load_image

        ref = image or load_image("agent-sandbox-devcontainer").reference
        text = json.dumps(devcontainer_json(prof, ref), indent=2) + "\n"
    if output:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def write_devcontainer_dir(prof: Profile, image: str | None, subnet: str | None,
                           output: Path | None) -> None:
    from ..compilers.devcontainer import default_subnet, devcontainer_files
    from ..images import load_image

    if output is None:
        raise InputError(f"tier {prof.name} needs its egress proxy beside the agent: its devcontainer is a directory "
                         "(devcontainer.json, compose.yaml, squid.conf); pass -o .devcontainer", None)
    directory = output.parent if output.name == "devcontainer.json" else output
    ref = image or load_image("agent-sandbox-devcontainer").reference
    proxy = load_image("agent-sandbox-proxy").local_reference  # built where it runs (make image), not published
    try:
        files = devcontainer_files(prof, ref, proxy_image=proxy,
                                   subnet=subnet or default_subnet(str(directory.absolute())))
    except ValueError as exc:
        raise InputError(str(exc), None) from None
    for name, text in files.items():
        atomic_write(directory / name, text)
    click.echo(f"wrote {', '.join(str(directory / name) for name in files)}")


@policy.command()
@click.argument("profile")
def explain(profile: str) -> None:
    """Per class: what PROFILE allows and denies, and which layer enforces it."""
    click.echo(render_explanation(explain_profile(profiles.load_profile(profile))), nl=False)


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Validate a profile file: schema, inheritance and every compiler target."""
    prof = profiles.load_profile(file)
    compile_leash(prof)
    run_args(prof)
    devcontainer_json(prof, "check")
    if prof.network.mode is NetworkMode.PROXIED:
        render_squid(prof, sandbox="check")
    click.echo(f"{file}: ok ({' -> '.join(prof.lineage)}; network {prof.network.mode.value}, workspace {prof.workspace_mode})")


@policy.command("compile-all")
@click.option("--check", "check_only", is_flag=True, help="Fail if the generated file is stale; write nothing.")
def compile_all(check_only: bool) -> None:
    """Regenerate images/compiled/policies.json (read by Nix) from images/policies/."""
    path = project_root() / bundle.GENERATED
    text = bundle.render_compiled()
    if check_only:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            raise InputError("stale: run `agent-sandbox policy compile-all` (or `make compile`) and commit it", None)
        click.echo(f"{bundle.GENERATED}: up to date")
        return
    atomic_write(path, text)
    click.echo(f"wrote {bundle.GENERATED}")
