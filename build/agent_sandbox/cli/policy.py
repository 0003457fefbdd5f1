"""`agent-sandbox policy ...`: compile a profile (a tier or a user's file) into each layer's policy, explain it, check
it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import bundle, profiles
from ..compilers.devcontainer import devcontainer_json
from ..compilers.explain import explain as explain_profile
from ..compilers.explain import render_explanation
from ..compilers.leash import compile_leash
from ..compilers.runargs import expand_local_env, missing_mounts, run_args
from ..compilers.seccomp import default_seccomp_path, seccomp_json
from ..compilers.squid import render_squid
from ..errors import InputError
from ..fsutil import atomic_write
from ..model import NetworkMode, Profile
from ..paths import project_root

TARGETS = ("leash", "run-args", "devcontainer", "squid", "seccomp")


def install_seccomp(prof: Profile, given: Path | None) -> str | None:
    """A profile that refuses user namespaces names a seccomp file in its flags: write it where they say (the default
    under ~/.local/share/agent-sandbox/seccomp/, or --seccomp-file) and tell stderr. Returns the path for the
    flags (None: the profile keeps the engine's default seccomp profile)."""
    text = seccomp_json(prof)
    if text is None:
        return None
    default = default_seccomp_path(prof)
    assert default is not None
    path = given.absolute() if given is not None else Path(expand_local_env(default, dict(os.environ)))
    if "${localEnv:" in str(path):
        raise InputError("HOME is not set: pass --seccomp-file PATH, where to write the seccomp profile", None)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, text)
    click.echo(
        f"agent-sandbox: profile {prof.name} runs under its own seccomp profile (no user namespaces): "
        f"{path} (the flags name it; keep it there)",
        err=True,
    )
    return str(path) if given is not None else None


def warn_missing_mounts(prof: Profile) -> None:
    for mount, source in missing_mounts(prof, dict(os.environ), os.path.exists):
        click.echo(
            f"agent-sandbox: warning: profile {prof.name} mounts {source} at {mount.target}, which does not "
            "exist here: the engine (and the Dev Containers CLI) will refuse to start until it does "
            "(`agent-sandbox run` leaves it out)",
            err=True,
        )


@click.group()
def policy() -> None:
    """Compile a profile (a tier name or a profile file) into each layer's policy; explain it; check it."""


@policy.command()
@click.argument("profile")
@click.option("--target", type=click.Choice(TARGETS), required=True, help="Which layer to compile for.")
@click.option("--image", default=None, help="Image reference for --target devcontainer.")
@click.option("--workspace", default=None, help="Host directory mounted at /workspace (run-args).")
@click.option("--sandbox", default="sandbox", help="Sandbox name written into the proxy's log lines (squid).")
@click.option("--subnet", default=None, help="The sandbox network's subnet (devcontainer of a proxied profile).")
@click.option(
    "--seccomp-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="run-args: where to write the seccomp profile of a profile that refuses user namespaces, "
    "which the flags then name (default: ~/.local/share/agent-sandbox/seccomp/).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Write here (atomically); a proxied profile's devcontainer is a directory (.devcontainer).",
)
def compile(
    profile: str,
    target: str,
    image: str | None,
    workspace: str | None,
    sandbox: str,
    subnet: str | None,
    seccomp_file: Path | None,
    output: Path | None,
) -> None:
    """Compile PROFILE into the policy of one enforcement layer.

    PROFILE: a tier name or a profile file.

    \b
    A proxied profile's devcontainer is Compose-based (the agent, its network and its egress proxy):
      agent-sandbox policy compile strict --target devcontainer -o .devcontainer
    run-args and devcontainer of a profile that refuses user namespaces (paranoid) name a seccomp profile file: it is
    written where they name it (said on stderr). --target seccomp prints that profile.
    """
    prof = profiles.load_profile(profile)
    if target == "devcontainer" and prof.network.mode is NetworkMode.PROXIED:
        write_devcontainer_dir(prof, image, subnet, output)
        return
    if target == "leash":
        text = compile_leash(prof)
    elif target == "squid":
        text = render_squid(prof, sandbox=sandbox)
    elif target == "seccomp":
        seccomp = seccomp_json(prof)
        if seccomp is None:
            raise InputError(
                f"profile {prof.name} keeps the engine's default seccomp profile "
                "(container.user_namespaces is not false): there is no seccomp profile to compile",
                None,
            )
        text = seccomp
    elif target == "run-args":
        seccomp_path = install_seccomp(prof, seccomp_file)
        warn_missing_mounts(prof)
        text = (
            json.dumps(run_args(prof, workspace=workspace, host_env=dict(os.environ), seccomp=seccomp_path), indent=2)
            + "\n"
        )
    else:
        from ..images import load_image

        if seccomp_file is not None:
            raise InputError(
                "--seccomp-file is for --target run-args: devcontainer.json names the file under "
                "${localEnv:HOME}, which every user of the file resolves for themselves",
                None,
            )
        install_seccomp(prof, None)
        warn_missing_mounts(prof)
        ref = image or load_image("agent-sandbox-devcontainer").reference
        text = json.dumps(devcontainer_json(prof, ref), indent=2) + "\n"
    if output:
        atomic_write(output, text)
    else:
        click.echo(text, nl=False)


def write_devcontainer_dir(prof: Profile, image: str | None, subnet: str | None, output: Path | None) -> None:
    from ..compilers.devcontainer import default_subnet, devcontainer_files
    from ..images import load_image

    if output is None:
        raise InputError(
            f"profile {prof.name} needs its egress proxy beside the agent: its devcontainer is a "
            "directory (devcontainer.json, compose.yaml, squid.conf); pass -o .devcontainer",
            None,
        )
    directory = output.parent if output.name == "devcontainer.json" else output
    ref = image or load_image("agent-sandbox-devcontainer").reference
    proxy = load_image("agent-sandbox-proxy").local_reference  # built where it runs (make image), not published
    try:
        files = devcontainer_files(
            prof, ref, proxy_image=proxy, subnet=subnet or default_subnet(str(directory.absolute()))
        )
    except ValueError as exc:
        raise InputError(str(exc), None) from None
    for name, text in files.items():
        atomic_write(directory / name, text)
    click.echo(f"wrote {', '.join(str(directory / name) for name in files)}")


@policy.command()
@click.argument("profile")
def explain(profile: str) -> None:
    """Per class: what PROFILE allows and denies, and which layer enforces it.

    PROFILE: a tier name or a profile file."""
    click.echo(render_explanation(explain_profile(profiles.load_profile(profile))), nl=False)


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Check a profile file: its schema, its inheritance, and that it compiles into every layer's policy."""
    prof = profiles.load_profile(file)
    compile_leash(prof)
    run_args(prof)
    devcontainer_json(prof, "check")
    if prof.network.mode is NetworkMode.PROXIED:
        render_squid(prof, sandbox="check")
    click.echo(
        f"{file}: ok ({' -> '.join(prof.lineage)}; network {prof.network.mode.value}, workspace {prof.workspace_mode})"
    )


@policy.command("compile-all")
@click.option("--check", "check_only", is_flag=True, help="Fail if the generated file is stale; write nothing.")
def compile_all(check_only: bool) -> None:
    """Regenerate images/compiled/policies.json (the tiers' policies, read by Nix) from images/policies/."""
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
