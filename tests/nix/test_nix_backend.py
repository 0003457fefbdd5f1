"""`agent-sandbox build --backend nix`: the exact command, and that command run against the stand-in."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import contract
import pytest
from click.testing import CliRunner
from nixharness import SYSTEM, Harness, requires_nix

from agent_sandbox.backends.nix import build_nix, nix_command, nix_string, variant_tag
from agent_sandbox.cli.build import build
from agent_sandbox.errors import InputError
from agent_sandbox.images import load_catalog, load_image
from agent_sandbox.paths import project_root

IMAGE = "agent-sandbox-devcontainer"


# ------------------------------------------------------------------ the command (no nix needed)
def test_dry_run_prints_the_exact_command() -> None:
    result = CliRunner().invoke(build, ["--backend", "nix", "--dry-run", IMAGE])
    assert result.exit_code == 0, result.output
    root = project_root()
    system = build_nix(IMAGE, dry_run=True).system
    assert result.output == f"nix build --json --no-link '{root}#packages.{system}.{IMAGE}'\n"


def test_dry_run_of_a_variant_prints_the_expression() -> None:
    result = CliRunner().invoke(
        build, ["--backend", "nix", "--dry-run", "--agents", "claude, codex", "--tier", "paranoid"]
    )
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output)
    system = build_nix(IMAGE, dry_run=True).system
    assert argv[:6] == ["nix", "build", "--impure", "--json", "--no-link", "--expr"]
    assert argv[6] == (
        f'(builtins.getFlake "{project_root()}").lib.{system}.mkAgentImage '
        '{ image = "agent-sandbox-devcontainer"; agents = [ "claude" "codex" ]; tier = "paranoid"; }'
    )


def test_dry_run_result() -> None:
    result = build_nix(IMAGE, agents=["claude"], tier="paranoid", dry_run=True)
    image = load_image(IMAGE)
    assert result.dry_run and result.out_path is None
    assert result.reference == f"{image.registry}/{image.name}:latest-paranoid-claude"


def test_variant_tags() -> None:
    image = load_image(IMAGE)
    assert variant_tag(image, None, None) == "latest"
    assert variant_tag(image, list(reversed(image.agents)), image.tier) == "latest"
    assert variant_tag(image, ["codex", "claude"], None) == "latest-claude-codex"
    assert variant_tag(image, None, "trusted") == "latest-trusted"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"agents": ["nobody"]}, "unknown agent"), ({"tier": "nope"}, "unknown tier"), ({"agents": []}, "at least one")],
)
def test_bad_requests_are_refused(kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        nix_command(IMAGE, system=SYSTEM, **kwargs)


def test_nix_strings_are_escaped() -> None:
    assert nix_string('a"b${c}\\') == '"a\\"b\\${c}\\\\"'


# ------------------------------------------------------------------ the command, run
@requires_nix[0]
@requires_nix[1]
@pytest.mark.parametrize(("agents", "tier"), [(None, None), (["claude"], "paranoid")])
def test_the_command_builds_against_the_stand_in(harness: Harness, agents, tier) -> None:
    """The exact command build_nix runs, pointed at a copy locked to the stand-in: the stand-in's
    buildLayeredImage is a real (trivial) derivation whose output is the JSON of its arguments
    and of what their store paths hold."""
    result = build_nix(
        IMAGE, agents=agents, tier=tier, flake=f"path:{harness.locked}", system=SYSTEM, nix_args=harness.options()
    )
    assert result.out_path and result.out_path.startswith("/nix/store/")
    built = json.loads(Path(result.out_path).read_text())
    args = built["args"]
    image = load_image(IMAGE)
    chosen_agents = tuple(agents) if agents else image.agents
    contract.check_image(args, image, load_catalog(), chosen_agents, tier or image.tier, built["store"])
    assert args["tag"] == result.reference.rsplit(":", 1)[1]
    assert args["name"] == result.reference.rsplit(":", 1)[0]


# ------------------------------------------------------------------ which backend this machine has
@requires_nix[0]
@requires_nix[1]
def test_nixpkgs_is_available_where_the_flake_can_evaluate(harness: Harness, tmp_path: Path) -> None:
    """`build --backend auto` picks Nix exactly when this probe succeeds: against a copy locked to the stand-in
    it does; against a copy whose nixpkgs input points at a missing path it does not."""
    from agent_sandbox.backends.nix import nixpkgs_available

    assert nixpkgs_available(flake=f"path:{harness.locked}", system=SYSTEM, nix_args=harness.options())
    missing = ["--override-input", "nixpkgs", f"path:{tmp_path / 'no-nixpkgs-here'}"]
    assert not nixpkgs_available(flake=f"path:{harness.plain}", system=SYSTEM, nix_args=[*harness.options(), *missing])
