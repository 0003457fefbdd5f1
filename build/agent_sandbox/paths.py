"""Where the project's data lives: policies and image descriptions (one copy, read by Nix and Python)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EnvironmentProblem


def project_root() -> Path:
    """The directory holding images/: AGENT_SANDBOX_HOME, else the checkout this package is in, else the copy
    installed with the package (agent_sandbox/data/images: the wheel carries the tiers, catalog and images)."""
    env = os.environ.get("AGENT_SANDBOX_HOME")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [*here.parents[1:], here.parent / "data"]
    for candidate in candidates:
        if (candidate / "images" / "policies").is_dir():
            return candidate
    raise EnvironmentProblem(
        "cannot find the images/policies directory; run from a checkout or set AGENT_SANDBOX_HOME to it"
    )


def policies_dir() -> Path:
    return project_root() / "images" / "policies"


def images_dir() -> Path:
    return project_root() / "images"
