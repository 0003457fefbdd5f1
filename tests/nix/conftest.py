"""Fixtures for the Nix tests (see nixharness.py for why a stand-in replaces nixpkgs here)."""

from __future__ import annotations

from typing import Any

import pytest
from nixharness import NIX, Harness, summary_expr, traced


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    if NIX is None:
        pytest.skip("the nix command is not installed (scripts/setup-nix.sh installs it)")
    return Harness(tmp_path_factory.mktemp("nix-harness"))


@pytest.fixture(scope="session")
def summary(harness: Harness) -> dict[str, Any]:
    """Every output the contract tests look at, from one evaluation of the flake against the stand-in."""
    value, proc = harness.eval_expr(summary_expr(harness.locked))
    value["_traced"] = sorted(traced(proc.stderr))
    return value
