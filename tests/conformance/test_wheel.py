"""The package as a user gets it: the wheel, installed with its dependencies (from PyPI) into a fresh venv outside the
checkout, and run from a directory outside it, explains a tier and verifies the image under test with nothing but
what the wheel carries — the tiers, the catalog, the image descriptions and the conformance suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent_sandbox.conformance.session import Session

REPO = Path(__file__).resolve().parents[2]
TIER = "strict"  # one tier keeps this test at about a minute and a half
AREAS = ("capabilities", "identity", "filesystem", "mounts", "limits", "network", "tools", "metadata")  # per tier
IMAGE_AREAS = ("versions",)  # once per image (no tier)
# What the wheel must carry (the functional checks below fail without them too; this says which part is missing).
CARRIED = (
    "agent_sandbox/pytest_plugin.py",
    "agent_sandbox/conformance/suite/__init__.py",
    *(f"agent_sandbox/conformance/suite/test_{area}.py" for area in AREAS + IMAGE_AREAS),
    f"agent_sandbox/data/images/policies/{TIER}.yaml",
    "agent_sandbox/data/images/catalog.toml",
    "agent_sandbox/data/images/agent-sandbox-devcontainer/image.toml",
)


def run(argv: list[str | Path], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """A command with none of this checkout's settings: no AGENT_SANDBOX_*, no PYTHONPATH, no active venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_SANDBOX_", "PYTEST_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output}"
    return result


def copy_sources(dest: Path) -> Path:
    """What the wheel is built from (the files nixlib/agent-sandbox.nix selects), copied as they are now: setuptools
    keeps its build directory (.setuptools-build) between builds, and a module left there by an earlier build of
    the checkout would ship in this wheel too, hiding one missing from the sources."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("build", "images"):  # build/agent_sandbox/data/images stays a link to ../../../images
        shutil.copytree(
            REPO / name, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv (in a temporary directory, outside the checkout) holding the wheel and its dependencies."""
    base = tmp_path_factory.mktemp("wheel")
    assert REPO not in base.parents
    dist = base / "dist"
    sources = copy_sources(base / "sources")
    ok(run([sys.executable, "-m", "pip", "wheel", sources, "--no-deps", "-q", "-w", dist], cwd=base))
    (wheel,) = dist.glob("agent_sandbox-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in CARRIED if name not in names], "the wheel lacks what verify and policy need"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "agent_sandbox = agent_sandbox.pytest_plugin" in zipfile.ZipFile(wheel).read(entry_points).decode()
    venv = base / "venv"
    ok(run([sys.executable, "-m", "venv", venv], cwd=base))
    ok(run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], cwd=base))
    return venv / "bin"


def test_the_installed_wheel_explains_a_tier(installed: Path, tmp_path: Path) -> None:
    out = ok(run([installed / "agent-sandbox", "policy", "explain", TIER], cwd=tmp_path)).stdout
    assert out.startswith(f"{TIER} ({TIER} <- agent-sandbox)"), out[:300]
    assert "NETWORK: proxied allowlist" in out and "api.anthropic.com:443" in out  # read from the wheel's tier file


def test_the_installed_wheel_verifies_the_image(installed: Path, session: Session, tmp_path: Path) -> None:
    result = ok(
        run(
            [installed / "agent-sandbox", "verify", session.image, "--tier", TIER, "--engine", session.engine.name],
            cwd=tmp_path,
        )
    )
    # the suite that ran is the wheel's, in the fresh venv (not this checkout's build/)
    started = next(line for line in result.stderr.splitlines() if line.startswith("running the conformance suite:"))
    assert "--pyargs agent_sandbox.conformance.suite" in started
    assert f"--confcutdir={installed.parent}/lib/" in started and str(REPO) not in started, started
    lines = result.stdout.splitlines()
    assert f"agent-sandbox verify: {session.image} on {session.engine.name}" in lines
    assert any(line.startswith(f"{TIER}: verified (") for line in lines), result.stdout[-3000:]
    for area in AREAS:
        assert any(line.startswith(f"  ok      {area}: ") for line in lines), f"{area}:\n{result.stdout[-3000:]}"
    for area in IMAGE_AREAS:
        assert any(line.startswith(f"ok      {area}: ") for line in lines), f"{area}:\n{result.stdout[-3000:]}"
    assert any(line.startswith("ok      suite self-test (weakened sandboxes are caught): ") for line in lines)
