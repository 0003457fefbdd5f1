"""nixlib/update-ca-certificates.sh, run for real (POSIX sh) on a temporary root.

The script is a template: Nix fills in @path@ and @bundle@ (nixlib/update-ca-certificates.nix).
Here @path@ is a directory holding a fake `id` (so "am I root?" is the test's choice) in front
of the host's tools, and @bundle@ a small bundle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from nixharness import REPO

TEMPLATE = REPO / "nixlib" / "update-ca-certificates.sh"
SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]


def pem(name: str, newline: bool = True) -> str:
    return f"-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----" + ("\n" if newline else "")


@pytest.fixture()
def root(tmp_path: Path):
    def make(uid: int) -> tuple[Path, Path]:
        fakebin = tmp_path / f"bin-{uid}"
        fakebin.mkdir()
        (fakebin / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (fakebin / "id").chmod(0o755)
        bundle = tmp_path / "ca-bundle.crt"
        bundle.write_text(pem("SYSTEM-CA-1") + pem("SYSTEM-CA-2", newline=False))
        script = tmp_path / f"update-ca-certificates-{uid}"
        text = TEMPLATE.read_text().replace("@path@", f"{fakebin}:/usr/bin:/bin").replace("@bundle@", str(bundle))
        script.write_text(text)
        script.chmod(0o755)
        sysroot = tmp_path / "image"
        (sysroot / "usr/local/share/ca-certificates/extra").mkdir(parents=True, exist_ok=True)
        return script, sysroot

    return make


def run(shell: str, script: Path, sysroot: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "UPDATE_CA_CERTIFICATES_SYSROOT": str(sysroot)}
    return subprocess.run([shell, str(script), *args], capture_output=True, text=True, env=env, timeout=30)


def test_template_is_posix_sh_with_placeholders() -> None:
    text = TEMPLATE.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "@path@" in text and "@bundle@" in text
    assert "[[" not in text and "local " not in text and "function " not in text


@pytest.mark.parametrize("shell", SHELLS)
def test_builds_the_debian_bundle(root, shell: str) -> None:
    script, sysroot = root(0)
    local = sysroot / "usr/local/share/ca-certificates"
    (local / "leash.crt").write_text(pem("LEASH-PROXY-CA", newline=False))
    (local / "extra" / "corp.crt").write_text(pem("CORP-CA"))
    (local / "notes.txt").write_text("not a cert\n")
    (local / "broken.crt").write_text("garbage\n")
    proc = run(shell, script, sysroot, "--fresh")
    assert proc.returncode == 0, proc.stderr
    bundle = (sysroot / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle == pem("SYSTEM-CA-1") + pem("SYSTEM-CA-2") + pem("CORP-CA") + pem("LEASH-PROXY-CA")
    assert "2 added, 1 skipped" in proc.stdout and "broken.crt" in proc.stderr
    link = sysroot / "etc/ssl/certs/ca-bundle.crt"
    assert link.is_symlink() and os.readlink(link) == "ca-certificates.crt"
    assert oct((sysroot / "etc/ssl/certs/ca-certificates.crt").stat().st_mode & 0o777) == "0o644"
    # idempotent, and a removed certificate is gone from the next bundle
    (local / "leash.crt").unlink()
    assert run(shell, script, sysroot).returncode == 0
    assert "LEASH-PROXY-CA" not in (sysroot / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert not list((sysroot / "etc/ssl/certs").glob(".*")), "temporary file left behind"


def test_refuses_to_run_as_a_user(root) -> None:
    script, sysroot = root(1000)
    proc = run("sh", script, sysroot)
    assert proc.returncode == 1 and "must be run as root" in proc.stderr
    assert not (sysroot / "etc/ssl/certs/ca-certificates.crt").exists()


def test_unknown_option(root) -> None:
    script, sysroot = root(0)
    proc = run("sh", script, sysroot, "--bogus")
    assert proc.returncode == 2 and "unknown option" in proc.stderr
