"""scripts/setup-nix.sh configures nix.conf idempotently (run against a temporary NIX_CONF_DIR)."""

from __future__ import annotations

import os
import subprocess

from nixharness import REPO, requires_nix

pytestmark = requires_nix

SCRIPT = REPO / "scripts" / "setup-nix.sh"


def run(conf_dir) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIX_CONF_DIR": str(conf_dir)}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)


def test_setup_is_idempotent_and_keeps_other_settings(tmp_path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("sandbox = false\nsubstituters = https://cache.nixos.org/\n")
    assert run(tmp_path).returncode == 0
    first = conf.read_text()
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert conf.read_text() == first
    lines = first.splitlines()
    assert "sandbox = false" in lines
    assert "experimental-features = nix-command flakes" in lines
    assert "substituters = " in lines and "substituters = https://cache.nixos.org/" not in lines
    assert f"flake-registry = {tmp_path}/registry-empty.json" in lines
    assert (tmp_path / "registry-empty.json").read_text() == '{"flakes":[],"version":2}\n'


def test_script_style() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# scripts/setup-nix.sh\n")
    assert "set -euo pipefail" in text
    assert os.access(SCRIPT, os.X_OK)


def test_a_fresh_configuration_builds(tmp_path) -> None:
    """What a fresh machine has: no nix.conf and, with Debian's nix-bin, no `nixbld` group. The script's
    configuration alone (the host's /etc/nix and the user's nix.conf are not read) must let `nix build` build."""
    conf_dir = tmp_path / "etc-nix"
    proc = run(conf_dir)
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "NIX_CONF_DIR": str(conf_dir), "NIX_USER_CONF_FILES": str(tmp_path / "none.conf")}
    if subprocess.run(["getent", "group", "nixbld"], capture_output=True).returncode != 0:
        assert "build-users-group = " in (conf_dir / "nix.conf").read_text().splitlines()
    # /bin/sh as the builder, like the stand-in's image derivations (Debian's nix-bin has no nixpkgs shell)
    expr = (
        'derivation { name = "fresh-machine"; system = builtins.currentSystem; builder = "/bin/sh"; '
        'args = [ "-c" "echo ok > $out" ]; }'
    )
    build = subprocess.run(
        ["nix", "build", "--impure", "--no-link", "--json", "--expr", expr],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    assert "/nix/store/" in build.stdout
