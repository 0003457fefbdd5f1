"""images/compiled/policies.json (what Nix reads) is what `agent-sandbox policy compile-all` writes now."""

from __future__ import annotations

import json

from nixharness import REPO


def test_compiled_policies_are_fresh(capsys) -> None:
    from agent_sandbox.cli import main

    assert main(["policy", "compile-all", "--check"]) == 0, capsys.readouterr().err


def test_compiled_policies_have_what_nix_reads() -> None:
    from agent_sandbox import bundle

    doc = json.loads((REPO / bundle.GENERATED).read_text())
    assert isinstance(doc["uid"], int) and isinstance(doc["gid"], int)
    for name, tier in doc["tiers"].items():
        assert isinstance(tier["metadata"], list) and tier["files"], name
        assert all(isinstance(text, str) for text in tier["files"].values()), name
        assert isinstance(tier["user"], str), name
