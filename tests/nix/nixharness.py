"""Helpers for the Nix tests: a copy of the flake wired to the test stand-in, and `nix` calls.

nixpkgs cannot be downloaded where these tests run, so the flake is evaluated against
tests/nix/stand-in/ (a project-owned stand-in for the few nixpkgs attributes we use, see its
default.nix). Two copies of the repository's Nix inputs are made in a temporary directory:

- `plain`: flake.lock untouched; tests pass `--override-input nixpkgs path:<stand-in>`;
- `locked`: flake.lock re-locked to the stand-in, so that expressions using
  `builtins.getFlake` (the backend's variant command) see it too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STAND_IN = HERE / "stand-in"
FIXTURE = HERE / "nixpkgs-attrs.toml"
SYSTEMS = ("x86_64-linux", "aarch64-linux")
SYSTEM = "x86_64-linux"

NIX = shutil.which("nix")
requires_nix = [
    pytest.mark.nix,
    pytest.mark.skipif(NIX is None, reason="the nix command is not installed (scripts/setup-nix.sh installs it)"),
]

# What the flake reads, copied into the harness (never .git, result links or caches).
COPIED = ("flake.nix", "flake.lock", "nixlib", "images", "pyproject.toml", "README.md", "build")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")

TRACE = re.compile(r"^trace: stand-in-access: (\S+)$", re.MULTILINE)


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "registry-empty.json"
        self.registry.write_text('{"flakes":[],"version":2}\n')
        self.stand_in = root / "stand-in"
        shutil.copytree(STAND_IN, self.stand_in, ignore=IGNORED)
        shutil.copy2(FIXTURE, self.stand_in / FIXTURE.name)
        self.plain = self.copy_repo("plain")
        self.locked = self.copy_repo("locked")
        self.run(["flake", "lock", "--override-input", "nixpkgs", f"path:{self.stand_in}"], cwd=self.locked)

    # ------------------------------------------------------------------ copies
    def copy_repo(self, name: str) -> Path:
        dest = self.root / name
        dest.mkdir()
        for item in COPIED:
            src = REPO / item
            if src.is_dir():
                shutil.copytree(src, dest / item, ignore=IGNORED)
            elif src.exists():
                shutil.copy2(src, dest / item)
        return dest

    def mutated(self, name: str, path: str, old: str, new: str, *, lock: bool = True) -> Path:
        """A locked copy with one textual change (the change must apply exactly once)."""
        dest = self.copy_repo(name)
        target = dest / path
        text = target.read_text()
        assert text.count(old) == 1, f"mutation anchor not found once in {path}: {old!r}"
        target.write_text(text.replace(old, new))
        if lock:
            self.run(["flake", "lock", "--override-input", "nixpkgs", f"path:{self.stand_in}"], cwd=dest)
        return dest

    # ------------------------------------------------------------------ nix
    def options(self) -> list[str]:
        return [
            "--extra-experimental-features", "nix-command flakes",
            "--option", "flake-registry", str(self.registry),
            "--option", "substituters", "",
        ]  # fmt: skip

    def run(self, args: list[str], *, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [NIX or "nix", *self.options(), *args], cwd=cwd, capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"nix {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return proc

    def eval_expr(self, expr: str, *, check: bool = True) -> tuple[Any, subprocess.CompletedProcess[str]]:
        proc = self.run(["eval", "--json", "--impure", "--expr", expr], check=check)
        value = json.loads(proc.stdout) if proc.returncode == 0 else None
        return value, proc

    @staticmethod
    def flake(path: Path) -> str:
        return f'(builtins.getFlake "path:{path}")'


def attr_of(out_path: str) -> str:
    """The nixpkgs attribute a stand-in package stands for, from its fake out path."""
    match = re.search(r"-stand-in-(.+)$", out_path)
    assert match, f"not a stand-in package: {out_path}"
    return match.group(1)


def traced(stderr: str) -> set[str]:
    return set(TRACE.findall(stderr))


# Everything the tests look at, evaluated in one `nix eval` (a few seconds, not one per test).
SUMMARY = """
let
  flake = FLAKE;
  sys = "SYSTEM";
  args = drv: drv.standInArgs;
  image = flake.packages.${sys}.agent-sandbox-devcontainer;
  imageArm = flake.packages.aarch64-linux.agent-sandbox-devcontainer;
  variant = flake.lib.${sys}.mkAgentImage { agents = [ "claude" ]; tier = "paranoid"; };
  leashOf = s: let l = flake.packages.${s}.leash; in { args = args l; src = args (args l).src; };
in
{
  packageSets = flake.packageSets.${sys};
  packageSetsArm = flake.packageSets.aarch64-linux;
  image = args image;
  imageTag = image.imageTag;
  imageName = image.imageName;
  imageArm = args imageArm;
  variant = args variant;
  # what the store paths of each image hold (the stand-in's fake packages), for contract.check_tools
  stores = { image = image.standInStore; imageArm = imageArm.standInStore; variant = variant.standInStore; };
  variantTag = variant.imageTag;
  # variants the Debian backend can build too (it skips cursor), for the labels both must agree on
  registryAgents = args (flake.lib.${sys}.mkAgentImage { agents = [ "claude" "codex" "gemini" "aider" ]; });
  noAgents = args (flake.lib.${sys}.mkAgentImage { agents = [ ]; });
  # the owner's builder called with its defaults only: no tier, no agents, no description
  bare = args (flake.lib.${sys}.mkDevContainer { packages = [ ]; });
  leash = { x86_64-linux = leashOf "x86_64-linux"; aarch64-linux = leashOf "aarch64-linux"; };
  cli = args flake.packages.${sys}.agent-sandbox;
  devShell = args flake.devShells.${sys}.default;
  checks = builtins.mapAttrs (_: d: args d) flake.checks.${sys};
  packages = builtins.attrNames flake.packages.${sys};
  lib = builtins.attrNames flake.lib.${sys};
}
"""


def summary_expr(path: Path, system: str = SYSTEM) -> str:
    return SUMMARY.replace("FLAKE", Harness.flake(path)).replace("SYSTEM", system)


def image_expr(path: Path, attr: str) -> str:
    """An image's recorded arguments and what its store paths hold, as contract.check_image takes them."""
    drv = f"{Harness.flake(path)}.{attr}"
    return f"{{ args = {drv}.standInArgs; store = {drv}.standInStore; }}"
