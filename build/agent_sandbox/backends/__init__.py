"""Image build backends: nix.py (`nix build` of the flake) and debian.py (mmdebstrap + a container engine)."""

from __future__ import annotations

from typing import Protocol


class BuildOutcome(Protocol):
    """What `agent-sandbox build` prints: the result of either backend (NixBuildResult, BuildResult)."""

    def summary(self) -> str: ...
