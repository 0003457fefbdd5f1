#!/usr/bin/env python3
"""Two Debian builds of this commit, each from an empty cache, compared (not a test: it takes two cold builds,
about 12 minutes on 2 cores).

The issue's "done when": both builds install the lock's versions (`dev.agent-sandbox.agent-versions`), get the
same layer keys, and give byte-identical SBOMs (`build --sbom`, Syft; SOURCE_DATE_EPOCH is not needed: the SBOM's
time is the commit's). Do not commit while it runs: the image's revision label is part of its last key. Each build
uses a throwaway cache repository and its own tag; what the script made is removed at the end (--keep leaves it).

Measured 2026-11-30 on 2 cores, podman, the full image: versions, layer keys and SBOM (sha256) the same; 274 s and
271 s per cold build.

    python bench/bench_reproducible.py                   # agent-sandbox-devcontainer
    python bench/bench_reproducible.py --agents claude   # a smaller pair of builds
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_sandbox.backends import debian_plan as dp
from agent_sandbox.backends.debian import git_revision
from agent_sandbox.engine import detect_engine
from agent_sandbox.paths import project_root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="agent-sandbox-devcontainer")
    parser.add_argument("--agents", default=None, help="comma-separated agents (default: the image's)")
    parser.add_argument("--keep", action="store_true", help="keep the images and cache layers it built")
    args = parser.parse_args()
    engine = detect_engine()
    head = git_revision(project_root())
    run_id = secrets.token_hex(4)
    results = []
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agent-sandbox-repro.") as work:
        try:
            for n in (1, 2):
                repo = f"localhost/agent-sandbox-repro-{run_id}-{n}"
                tag = f"localhost/{args.image}:repro-{run_id}-{n}"
                sbom = Path(work) / f"{n}.spdx.json"
                argv = [
                    sys.executable,
                    "-m",
                    "agent_sandbox.cli",
                    "build",
                    args.image,
                    "--backend",
                    "debian",
                    "--tag",
                    tag,
                    "--sbom",
                    str(sbom),
                    *(["--agents", args.agents] if args.agents else []),
                ]
                started = time.monotonic()
                done = subprocess.run(
                    argv, env={**os.environ, "AGENT_SANDBOX_CACHE_REPO": repo}, text=True, capture_output=True
                )
                seconds = time.monotonic() - started
                listed = engine.run(["images", repo, "--format", "{{.Tag}}"], check=False).out.split()
                made += [f"{repo}:{t}" for t in listed] + [tag]
                if done.returncode != 0:
                    print(done.stdout + done.stderr, file=sys.stderr)
                    return 1
                labels = engine.image_labels(tag)
                results.append(
                    {
                        "seconds": seconds,
                        "versions": labels.get(dp.LABEL_AGENT_VERSIONS, ""),
                        "keys": sorted(t for t in listed if t.split("-", 1)[0] in dp.PHASES),
                        "sbom": hashlib.sha256(sbom.read_bytes()).hexdigest(),
                    }
                )
        finally:
            if not args.keep:
                for ref in made:
                    engine.remove_image(ref)
    if git_revision(project_root()) != head:
        print("the checkout's HEAD moved during the run: the builds are of different commits", file=sys.stderr)
        return 1
    one, two = results
    for name in ("versions", "keys", "sbom"):
        same = "same" if one[name] == two[name] else "DIFFERENT"
        print(f"{name:9} {same}: {one[name]}" + ("" if one[name] == two[name] else f" vs {two[name]}"))
    print(f"seconds   {one['seconds']:.0f} / {two['seconds']:.0f}")
    return 0 if all(one[k] == two[k] for k in ("versions", "keys", "sbom")) else 1


if __name__ == "__main__":
    sys.exit(main())
