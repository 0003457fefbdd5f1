"""`agent-sandbox pin`: the real nix-prefetch-url against files served on the loopback interface; comments and order
of the sources file kept; a changed hash, an unreachable URL, missing nix: one line, non-zero exit, file untouched."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nixharness import requires_nix

pytestmark = requires_nix

SOURCES = """\
# a sources file of the test's own
# (this comment stays)

[tool]
version = "1.0.0"

[tool.x86_64-linux]
url = "http://127.0.0.1:{port}/tool_1.0.0_amd64.tar.gz"
# sha256 0000
hash = ""

[tool.aarch64-linux]
url = "http://127.0.0.1:{port}/tool_1.0.0_arm64.tar.gz"
hash = ""
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "www"
    root.mkdir()
    for version in ("1.0.0", "1.1.0"):
        for arch in ("amd64", "arm64"):
            (root / f"tool_{version}_{arch}.tar.gz").write_bytes(f"tool {version} {arch}\n".encode())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, server.server_address[1]
    server.shutdown()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "pin", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def sri(data: bytes) -> str:
    import base64

    return "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_pin_writes_the_hashes_nix_computes_and_keeps_the_file_as_it_was(served, tmp_path):
    root, port = served
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES.format(port=port))
    done = cli("--file", str(path))
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    amd64 = (root / "tool_1.0.0_amd64.tar.gz").read_bytes()
    assert (
        f'hash = "{sri(amd64)}"' in text and f'hash = "{sri((root / "tool_1.0.0_arm64.tar.gz").read_bytes())}"' in text
    )
    assert f"# sha256 {hashlib.sha256(amd64).hexdigest()}" in text and "# sha256 0000" not in text
    assert text.startswith("# a sources file of the test's own\n# (this comment stays)\n")
    assert cli("--file", str(path), "--check").returncode == 0


def test_a_new_version_rewrites_the_urls(served, tmp_path):
    _, port = served
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES.format(port=port))
    done = cli("tool", "--version", "1.1.0", "--file", str(path))
    assert done.returncode == 0, done.stderr
    assert 'version = "1.1.0"' in path.read_text() and "tool_1.1.0_arm64" in path.read_text()
    assert "version 1.0.0 -> 1.1.0" in done.stdout


@pytest.mark.parametrize("how", ["changed-hash", "unreachable", "check-mismatch", "no-nix", "unknown-source"])
def test_failures_are_one_line_and_leave_the_file_untouched(how, served, tmp_path):
    root, port = served
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES.format(port=port))
    assert cli("--file", str(path)).returncode == 0
    before = path.read_text()
    args, env = ["--file", str(path)], None
    if how in ("changed-hash", "check-mismatch"):
        (root / "tool_1.0.0_amd64.tar.gz").write_bytes(b"someone replaced the release\n")
        if how == "check-mismatch":
            args.append("--check")
    elif how == "unreachable":
        path.write_text(before.replace(f"127.0.0.1:{port}", "127.0.0.1:9"))
        before = path.read_text()
    elif how == "no-nix":
        env = {"PATH": "/nonexistent"}
    else:
        args.insert(0, "nosuchtool")
    done = subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "pin", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.returncode == {"no-nix": 3, "unknown-source": 2}.get(how, 1)
    assert path.read_text() == before
