"""The Python is formatted by ruff and clean for its linter, with the settings in pyproject.toml ([tool.ruff]: 120
columns, pycodestyle, pyflakes, import order, pyupgrade, bugbear). `ruff format .` and `ruff check --fix .` mend most
findings; the rest this test prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ruff() -> str:
    """The venv's ruff first (pytest may run without the venv on PATH), then PATH."""
    found = shutil.which("ruff", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail("ruff is not installed: it is in the [test] extra (pip install -e '.[test]', or make venv)")
    return found


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["check", "--no-cache", "--output-format", "concise", "."], id="lint"),
        pytest.param(["format", "--no-cache", "--check", "--diff", "."], id="format"),
    ],
)
def test_ruff_is_clean(argv: list[str]) -> None:
    out = subprocess.run([ruff(), *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
