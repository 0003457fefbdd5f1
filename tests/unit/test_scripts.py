"""Our shell scripts are shellcheck-clean (the owner's convention), checked, not promised."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the images' own scripts too (their rootfs trees): entrypoints, helpers, login hooks
SCRIPTS = sorted(
    [
        *ROOT.glob("scripts/*.sh"),
        *ROOT.glob("nixlib/*.sh"),
        ROOT / ".ci" / "run",
        *(
            p
            for p in ROOT.glob("images/*/rootfs/**/*")
            if p.is_file() and p.read_bytes()[:2] in (b"#!", b"# ") and not p.suffix == ".conf"
        ),
        *(p for p in ROOT.glob("tests/images/*/rootfs/**/*") if p.is_file()),
    ]
)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck not installed (scripts/setup-host.sh installs it)"
)
@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_shellcheck_clean(script: Path) -> None:
    out = subprocess.run(["shellcheck", "--external-sources", str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_strict_mode(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    if "/profile.d/" in str(script):  # sourced by login shells: no interpreter line, no `set -e` (it would leak)
        assert text.startswith("# shellcheck shell=sh\n")
    elif text.startswith("#!/usr/bin/env bash"):
        assert "set -euo pipefail" in text
    else:
        assert text.startswith("#!/bin/sh") or text.startswith("#!/usr/bin/env sh"), "unexpected interpreter"
