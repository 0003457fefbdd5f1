"""Every .nix file of the repository parses (nix-instantiate --parse) and follows the house style."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from nixharness import REPO, requires_nix

pytestmark = requires_nix

NIX_FILES = sorted(
    p for p in REPO.rglob("*.nix") if not any(part in (".git", "node_modules", "result") for part in p.parts)
)


def test_there_are_nix_files() -> None:
    names = {p.relative_to(REPO).as_posix() for p in NIX_FILES}
    assert {"flake.nix", "nixlib/default.nix", "nixlib/mk-dev-container.nix", "tests/nix/stand-in/default.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_parses(path) -> None:
    binary = shutil.which("nix-instantiate")
    assert binary, "nix-instantiate is missing next to nix"
    proc = subprocess.run([binary, "--parse", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_owner_style(path) -> None:
    """`# path/of/file.nix` on line 1, 2-space indentation, no tabs."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {path.relative_to(REPO).as_posix()}"
    assert not any("\t" in line for line in lines)
    indents = {len(line) - len(line.lstrip(" ")) for line in lines if line.strip()}
    assert all(i % 2 == 0 for i in indents), f"odd indentation in {path}"
