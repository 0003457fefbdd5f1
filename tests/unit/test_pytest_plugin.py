"""The conformance suite's pytest plugin: registered through `pytest11`, free in pytest runs that are not the suite's,
and every shipped conformance test says which area of verify's report it counts towards."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import agent_sandbox.conformance.suite as suite


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("agent_sandbox") == "agent_sandbox.pytest_plugin"


def test_loading_the_plugin_imports_nothing_but_itself() -> None:
    """Every pytest run where the package is installed loads the plugin: it must not pull in the suite's machinery
    (testinfra, the engine layer, plumbum, the profiles) before a test asks for it."""
    script = (
        "import sys, pytest; before = set(sys.modules); import agent_sandbox.pytest_plugin; "
        "import json; print(json.dumps(sorted(set(sys.modules) - before - {'json'})))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == ["agent_sandbox", "agent_sandbox.pytest_plugin"]


# A project of someone else's, with its own `tier` fixture, next to one test marked as a conformance test.
UNRELATED = """
import pytest

@pytest.fixture
def tier():
    return "theirs"

def test_their_own_tier_fixture(tier):
    assert tier == "theirs"

@pytest.mark.area("demo")
def test_a_conformance_test_runs_per_selected_tier(tier):
    assert tier in ("strict", "paranoid")
"""


def test_only_tests_marked_area_are_touched(tmp_path: Path) -> None:
    """No option is required, a test without an `area` marker keeps its own `tier`, and a test with one runs for
    every selected tier and reports its area and tier as JUnit properties (what verify reads)."""
    (tmp_path / "test_theirs.py").write_text(textwrap.dedent(UNRELATED))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_SANDBOX_", "PYTEST_"))}
    env["AGENT_SANDBOX_TIERS"] = "strict,paranoid"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=j.xml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cases = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(tmp_path / "j.xml").getroot().iter("testcase")
    }
    assert cases == {
        "test_their_own_tier_fixture": {},
        "test_a_conformance_test_runs_per_selected_tier[strict]": {"area": "demo", "tier": "strict"},
        "test_a_conformance_test_runs_per_selected_tier[paranoid]": {"area": "demo", "tier": "paranoid"},
    }


# ------------------------------------------------------------------ the shipped suite
def shipped_modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(suite.__path__):
        if info.name.startswith("test_"):
            yield importlib.import_module(f"{suite.__name__}.{info.name}")


def shipped_tests() -> list[Any]:
    return [
        pytest.param(module, name, id=f"{module.__name__.rsplit('.', 1)[-1]}::{name}")
        for module in shipped_modules()
        for name, value in vars(module).items()
        if name.startswith("test_") and callable(value)
    ]


def marks(module: ModuleType, name: str) -> list[pytest.Mark]:
    return [*getattr(module, "pytestmark", []), *getattr(getattr(module, name), "pytestmark", [])]


@pytest.mark.parametrize(("module", "name"), shipped_tests())
def test_every_shipped_test_has_one_area_and_needs_a_container(module: ModuleType, name: str) -> None:
    areas = [m.args for m in marks(module, name) if m.name == "area"]
    assert len(areas) == 1 and len(areas[0]) == 1 and areas[0][0], f"area markers: {areas}"
    assert "container" in {m.name for m in marks(module, name)}


def test_the_shipped_areas_are_what_verify_reports() -> None:
    areas = {m.args[0] for module in shipped_modules() for m in getattr(module, "pytestmark", []) if m.name == "area"}
    assert areas == {
        "capabilities",
        "identity",
        "filesystem",
        "mounts",
        "limits",
        "network",
        "tools",
        "metadata",
        "versions",
        "suite self-test (weakened sandboxes are caught)",
    }
