"""Build an image with Nix (`agent-sandbox build --backend nix`).

The image is the flake's `packages.<system>.<image>`; a variant (other agents, another tier) is
`lib.<system>.mkAgentImage { image; agents; tier; }` of the same flake, built from an expression:

    nix build --json --no-link <repo>#packages.x86_64-linux.agent-sandbox-devcontainer
    nix build --impure --json --no-link --expr '(builtins.getFlake "<repo>").lib.x86_64-linux.mkAgentImage {...}'

(`--impure` because getFlake of a local checkout is an unlocked reference.) Nix 2.8 has no
`--print-out-paths`: the out path is read from `--json`. The result is a docker-archive tarball:
`docker load < <out path>` tags it `<registry>/<name>:<tag>` (see `variant_tag`).
"""

from __future__ import annotations

import json
import platform
import shlex
import shutil
import subprocess
from collections.abc import Sequence

import attrs

from .. import profiles
from ..errors import CommandFailed, EnvironmentProblem, InputError, Location
from ..images import Image, check_agents, load_catalog, load_image
from ..paths import project_root

MACHINE_SYSTEMS = {
    "x86_64": "x86_64-linux",
    "amd64": "x86_64-linux",
    "aarch64": "aarch64-linux",
    "arm64": "aarch64-linux",
}


@attrs.frozen
class NixBuildResult:
    image: str  # image name (images/<image>/image.toml)
    reference: str  # what `docker load < out_path` tags the image as
    command: tuple[str, ...]  # the exact nix command (argv)
    out_path: str | None  # the docker-archive tarball; None on a dry run
    system: str
    dry_run: bool = False

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def summary(self) -> str:
        if self.dry_run:
            return self.command_line
        return f"built {self.reference} ({self.system}): {self.out_path}\nload it with: docker load < {self.out_path}"


def current_system() -> str:
    """The Nix system string of this machine (images are Linux images)."""
    machine = platform.machine().lower()
    if machine not in MACHINE_SYSTEMS:
        raise EnvironmentProblem(f"no Nix image build for machine type {machine!r} (x86_64 and aarch64 only)")
    return MACHINE_SYSTEMS[machine]


def nix_string(text: str) -> str:
    """A Nix double-quoted string literal for `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n")
    return f'"{escaped}"'


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def variant_tag(image: Image, agents: Sequence[str] | None, tier: str | None) -> str:
    """The tag of a variant, as nixlib/mk-agent-image.nix computes it (a test compares the two)."""
    tag = image.tag
    if tier is not None and tier != image.tier:
        tag += f"-{tier}"
    if agents is not None and sorted(set(agents)) != sorted(set(image.agents)):
        tag += "-" + "-".join(sorted(set(agents)))
    return tag


def nix_command(
    image_name: str,
    *,
    agents: Sequence[str] | None = None,
    tier: str | None = None,
    flake: str | None = None,
    system: str | None = None,
) -> tuple[Image, tuple[str, ...]]:
    """Validate the request and return (image, the exact `nix build` argv)."""
    catalog = load_catalog()
    image = load_image(image_name, catalog)
    if agents is not None:
        agents = _unique(agents)
        if not agents:
            raise InputError("--agents needs at least one agent")
        check_agents(agents, catalog, Location("--agents"))
    if tier is not None and tier not in profiles.tier_names():
        known = ", ".join(profiles.tier_names())
        raise InputError(
            f"unknown tier {tier!r} for the nix backend; it builds the shipped tiers ({known}); "
            "a profile of your own needs --backend debian",
            Location("--tier"),
        )
    flake = flake or str(project_root())
    system = system or current_system()
    if agents is None and tier is None:
        return image, ("nix", "build", "--json", "--no-link", f"{flake}#packages.{system}.{image.name}")
    fields = [f"image = {nix_string(image.name)};"]
    if agents is not None:
        fields.append("agents = [ " + " ".join(nix_string(a) for a in agents) + " ];")
    if tier is not None:
        fields.append(f"tier = {nix_string(tier)};")
    expr = f"(builtins.getFlake {nix_string(flake)}).lib.{system}.mkAgentImage {{ {' '.join(fields)} }}"
    return image, ("nix", "build", "--impure", "--json", "--no-link", "--expr", expr)


def build_nix(
    image_name: str,
    *,
    agents: Sequence[str] | None = None,
    tier: str | None = None,
    dry_run: bool = False,
    flake: str | None = None,
    system: str | None = None,
    nix_args: Sequence[str] = (),
) -> NixBuildResult:
    """Build IMAGE (a variant with `agents`/`tier`) with `nix build`; `dry_run` only returns the command.

    `flake` (default: this checkout) and `nix_args` (appended, e.g. `--override-input ...`) exist for
    tests and CI; users leave them alone.
    """
    image, command = nix_command(image_name, agents=agents, tier=tier, flake=flake, system=system)
    command = command + tuple(nix_args)
    system = system or current_system()
    reference = f"{image.registry}/{image.name}:{variant_tag(image, agents, tier)}"
    if dry_run:
        return NixBuildResult(image.name, reference, command, None, system, dry_run=True)
    if shutil.which(command[0]) is None:
        raise EnvironmentProblem("`nix` is not on PATH: install Nix (>= 2.8, flakes enabled) or use --backend debian")
    from plumbum import local

    # Build logs go straight to the user's stderr; stdout carries the --json answer.
    proc = local[command[0]][list(command[1:])].popen(stdout=subprocess.PIPE, stderr=None)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise CommandFailed(f"nix build failed (exit {proc.returncode}); the command was: {shlex.join(command)}")
    out_path = _out_path(out.decode() if isinstance(out, bytes) else out)
    return NixBuildResult(image.name, reference, command, out_path, system)


def probe_command(flake: str | None = None, system: str | None = None) -> tuple[str, ...]:
    """A cheap evaluation that needs the flake's real nixpkgs: the name of the first base package."""
    flake = flake or f"path:{project_root()}"
    system = system or current_system()
    return ("nix", "eval", "--raw", f"{flake}#packageSets.{system}.base", "--apply", "l: (builtins.head l).name")


def nixpkgs_available(
    flake: str | None = None, system: str | None = None, nix_args: Sequence[str] = (), timeout: float = 300
) -> bool:
    """Can this machine evaluate (and so build) the flake: `nix` installed and its nixpkgs fetchable?

    Where nixpkgs is unreachable the fetch fails at once (no route, no name); where it is reachable
    this downloads it, which the build would do anyway.
    """
    if shutil.which("nix") is None:
        return False
    from plumbum import ProcessTimedOut, local

    command = probe_command(flake, system)
    try:
        code, _, _ = local[command[0]][[*command[1:], *nix_args]].run(retcode=None, timeout=timeout)
    except ProcessTimedOut:
        return False
    return code == 0


def _out_path(stdout: str) -> str:
    try:
        built = json.loads(stdout)
        return str(built[0]["outputs"]["out"])
    except (ValueError, LookupError, TypeError):
        raise CommandFailed(f"unexpected output from `nix build --json`: {stdout[:200]!r}") from None
