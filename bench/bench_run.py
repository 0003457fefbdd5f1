#!/usr/bin/env python3
"""Benchmark of `agent-sandbox run` start-up (not a test: it prints numbers and never fails on a missed goal).

Issue: "`run` to agent-ready (proxied strict) vs a bare `podman run` of the same image: goal within 2x".

Measured side by side in one run, median of --runs (default 5), in turns (each round starts with the next
command, so that noise spreads evenly over all of them):

  bare              `<engine> run --rm IMAGE true`
  strict            `agent-sandbox run --tier strict shell -- -c 'echo <mark>'`: the whole CLI in a fresh
                    interpreter (own network, Squid proxy, agent container, readiness probe, exec, teardown)
  paranoid          the same with --tier paranoid (no network, no proxy)
  standard          the same with --tier standard (open network, no proxy)
  python + imports  `python -c 'import agent_sandbox.cli'` (what every CLI run pays before it does anything)

For each tier "to ready" is the time from starting the CLI until the agent's command has run (its output line
arrives: `echo <mark>` instead of `true` only to see that moment); "total" is until the CLI has exited, i.e.
including the teardown of everything it started. The goal compares strict's to-ready with bare.

Then a breakdown of where a strict start spends its time: the CLI's `run_agent` in-process (--breakdown-runs
times, median per step) with every engine command timed (Engine.run wrapped) and the agent's `exec` timed
(runtime.attach wrapped).

    PYTHONPATH=build python bench/bench_run.py                  # podman, 5 runs
    PYTHONPATH=build python bench/bench_run.py --engine docker --runs 7 --breakdown-runs 5

Everything it makes is named asbench-* (sandboxes, the outbound network the proxies join) and removed again, also
on Ctrl-C and SIGTERM; sandbox state goes to a temporary AGENT_SANDBOX_STATE. API-key variables are removed from
the environment of the runs (no key gateway: the measurement is the sandbox, not key delivery).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from agent_sandbox import images, runtime
from agent_sandbox.cli import run as cli_run
from agent_sandbox.engine import Engine, detect_engine
from agent_sandbox.process import Result
from agent_sandbox.signals import Terminated, sigterm_unwinds

DEFAULT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
MARK = "asbench-agent-ran"
TIERS = ("strict", "paranoid", "standard")
PREFIX = "asbench-run"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    """What one benchmark run made (names to clean up) and how it runs the CLI."""

    def __init__(self, engine: Engine, image: str) -> None:
        self.engine = engine
        self.image = image
        self.tmp = Path(tempfile.mkdtemp(prefix="asbench-run."))
        self.workspace = self.tmp / "workspace"
        self.workspace.mkdir()
        self.outbound = f"asbench-outbound-{secrets.token_hex(3)}"
        self.names: list[str] = []
        keys = set(images.api_key_vars(images.load_catalog()))
        self.env = {k: v for k, v in os.environ.items() if k not in keys}
        self.env["AGENT_SANDBOX_STATE"] = str(self.tmp / "state")

    def new_name(self, tier: str) -> str:
        name = f"{PREFIX}-{tier}-{secrets.token_hex(3)}"
        self.names.append(name)
        return name

    def cli_argv(self, tier: str, name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agent_sandbox",
            "run",
            "--tier",
            tier,
            "--engine",
            self.engine.name,
            "--image",
            self.image,
            "--workspace",
            str(self.workspace),
            "--name",
            name,
            "--outbound-network",
            self.outbound,
            "shell",
            "--",
            "-c",
            f"echo {MARK}",
        ]

    def cleanup(self) -> None:
        for name in self.names:
            runtime.remove_leftovers(self.engine, name)
        self.engine.remove_network(self.outbound)
        shutil.rmtree(self.tmp, ignore_errors=True)


def timed(argv: Sequence[str], env: dict[str, str] | None = None, mark: str | None = None) -> tuple[float, float]:
    """(seconds until a stdout line equal to `mark` arrived — or the total without a mark, total seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else ""), daemon=True)
    reader.start()
    ready = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if mark is not None and ready is None and line.strip() == mark:
                ready = time.monotonic() - start
        code = proc.wait()
    except BaseException:
        proc.terminate()  # the CLI unwinds on SIGTERM and removes its sandbox
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        raise
    total = time.monotonic() - start
    reader.join()
    if code != 0 or (mark is not None and ready is None):
        sys.exit(f"`{' '.join(argv[:8])} ...` failed (exit {code}):\n{''.join(err)[-2000:]}")
    return (ready if ready is not None else total), total


def run_tier(bench: Bench, tier: str) -> tuple[float, float]:
    return timed(bench.cli_argv(tier, bench.new_name(tier)), bench.env, MARK)


def measure(bench: Bench, runs: int) -> dict[str, list[tuple[float, float]]]:
    engine = bench.engine
    commands: dict[str, Callable[[], tuple[float, float]]] = {
        "bare": lambda: timed([engine.exe, "run", "--rm", bench.image, "true"]),
        "python + imports": lambda: timed([sys.executable, "-c", "import agent_sandbox.cli"], bench.env),
    }
    for tier in TIERS:
        commands[tier] = functools.partial(run_tier, bench, tier)
    order = list(commands)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in order}
    commands["bare"]()  # one unmeasured run of each kind first: page cache, the outbound network's bridge
    commands["strict"]()
    for round_ in range(runs):
        log(f"  round {round_ + 1}/{runs}")
        for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
            results[name].append(commands[name]())
    return results


# ---------------------------------------------------------------- the breakdown of one strict start
class Recorder:
    """Times every engine command a `run_agent` issues and puts it in a step of the start."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proxy = f"{name}-proxy"
        self.network = f"{name}-net"
        self.created = False
        self.steps: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def step(self, args: Sequence[str]) -> str:
        a = list(args)
        head = a[:2]
        if a[0] == "info":
            return "detect engine (`info`)"
        if head == ["network", "create"]:
            if a[-1] == self.network:
                self.created = True
                return "sandbox network create (+ subnet)"
            return "outbound network create"
        if head == ["network", "connect"]:
            return "proxy joins sandbox network (connect)"
        if head == ["network", "rm"]:
            return "teardown: network rm"
        if a[0] == "rm":
            return "teardown: rm containers"
        if a[0] == "run":
            return "proxy run" if f"--name={self.proxy}" in a else "agent run"
        if a[0] == "exec":
            return "readiness probe (exec in agent)" if runtime.PROXY_PROBE in a else f"exec {a[1]}"
        if not self.created:
            return "checks before start (image, labels, names)"
        target = a[-1]
        if target == self.network:
            return "sandbox network create (+ subnet)"
        if target == self.proxy:
            return "proxy checks (running, address)"
        if target == self.name:
            return "agent running check (inspect)"
        return " ".join(head)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        real_run, real_attach = Engine.run, runtime.attach
        recorder = self

        def run(engine: Engine, args: Sequence[str], **kwargs: object) -> Result:
            start = time.monotonic()
            try:
                return real_run(engine, args, **kwargs)  # type: ignore[arg-type]
            finally:
                step = recorder.step(args)
                recorder.steps[step] += time.monotonic() - start
                recorder.calls[step] += 1

        def attach(argv: Sequence[str], env: dict[str, str]) -> int:
            start = time.monotonic()
            try:  # as runtime.attach, without this terminal (the benchmark's stdin is not the agent's)
                return subprocess.run(
                    list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False
                ).returncode
            finally:
                recorder.steps["agent command (exec, attached)"] += time.monotonic() - start
                recorder.calls["agent command (exec, attached)"] += 1

        Engine.run = run  # type: ignore[method-assign]
        runtime.attach = attach  # type: ignore[assignment]
        try:
            yield
        finally:
            Engine.run = real_run  # type: ignore[method-assign]
            runtime.attach = real_attach  # type: ignore[assignment]


def breakdown(bench: Bench, runs: int) -> tuple[list[dict[str, float]], collections.Counter[str], list[float]]:
    per_run: list[dict[str, float]] = []
    totals: list[float] = []
    calls: collections.Counter[str] = collections.Counter()
    for index in range(runs):
        log(f"  breakdown {index + 1}/{runs}")
        name = bench.new_name("strict")
        recorder = Recorder(name)
        options = cli_run.RunOptions(
            tier="strict",
            workspace=bench.workspace,
            engine=bench.engine.name,
            image=bench.image,
            name=name,
            outbound_network=bench.outbound,
        )
        with recorder.installed(), contextlib.redirect_stderr(io.StringIO()):  # (the CLI's banner)
            start = time.monotonic()
            code = cli_run.run_agent("shell", ["-c", "true"], options, env=bench.env, tty=False)
            totals.append(time.monotonic() - start)
        if code != 0:
            sys.exit(f"run_agent exited {code}")
        per_run.append(dict(recorder.steps))
        calls = recorder.calls
    return per_run, calls, totals


# ---------------------------------------------------------------- report
def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(
    bench: Bench,
    runs: int,
    results: dict[str, list[tuple[float, float]]],
    steps: list[dict[str, float]],
    calls: collections.Counter[str],
    totals: list[float],
) -> None:
    engine = bench.engine
    bare = med([total for _, total in results["bare"]])
    print(
        f"\n`agent-sandbox run` start-up vs a bare `{engine.name} run --rm IMAGE true` "
        f"({engine.name}, {bench.image}, median of {runs}, in turns)\n"
    )
    print(f"{'command':<34} {'to ready':>9} {'total':>9} {'teardown':>9} {'ready/bare':>11} {'total/bare':>11}")
    print(f"{'bare ' + engine.name + ' run --rm IMAGE true':<34} {'':>9} {bare:>8.2f}s {'':>9} {'':>11} {1:>10.2f}x")
    python = med([total for _, total in results["python + imports"]])
    for tier in TIERS:
        ready = med([r for r, _ in results[tier]])
        total = med([t for _, t in results[tier]])
        teardown = med([t - r for r, t in results[tier]])
        print(
            f"{'agent-sandbox run --tier ' + tier:<34} {ready:>8.2f}s {total:>8.2f}s {teardown:>8.2f}s "
            f"{ready / bare:>10.2f}x {total / bare:>10.2f}x"
        )
    print(
        f"{'python -c import agent_sandbox.cli':<34} {'':>9} {python:>8.2f}s {'':>9} {'':>11} {python / bare:>10.2f}x"
    )
    strict = med([r for r, _ in results["strict"]])
    verdict = "met" if strict <= 2 * bare else "MISSED"
    print(
        f"\ngoal: strict to-ready within 2x of bare: {strict / bare:.2f}x -> {verdict} "
        f"(2x bare = {2 * bare:.2f} s; strict to-ready {strict:.2f} s)"
    )

    if not steps:
        return
    names = list(dict.fromkeys(step for run in steps for step in run))
    engine_total = med([sum(run.values()) for run in steps])
    total = med(totals)
    print(
        f"\nwhere a strict start spends its time (run_agent in-process, median of {len(steps)}; "
        f"total {total:.2f} s + python start/imports {python:.2f} s)\n"
    )
    print(f"{'step':<44} {'median':>8} {'calls':>6} {'per call':>9} {'share':>6}")
    rows = [(name, med([run.get(name, 0.0) for run in steps]), calls.get(name, 0)) for name in names]
    for name, seconds, count in rows:
        print(f"{name:<44} {seconds:>7.3f}s {count:>6} {seconds / max(count, 1):>8.3f}s {seconds / total:>6.0%}")
    other = total - engine_total
    print(f"{'in-process Python (profile, squid.conf, ...)':<44} {other:>7.3f}s {'':>6} {'':>9} {other / total:>6.0%}")
    teardown = med([sum(v for k, v in run.items() if k.startswith("teardown")) for run in steps])
    print(f"{'total in-process':<44} {total:>7.3f}s   (to ready {total - teardown:.3f} s + teardown {teardown:.3f} s)")
    count = sum(calls.values())
    print(
        f"\n{count} engine commands per start ({engine_total:.2f} s in all, "
        f"{engine_total / count * 1000:.0f} ms each on average); bare `{engine.name} run --rm` is one command "
        "doing create, start, wait and remove."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("podman", "docker"), default=None, help="default: detect")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--runs", type=int, default=5, help="rounds of the side-by-side measurement (median)")
    parser.add_argument("--breakdown-runs", type=int, default=3, help="in-process strict starts (0: none)")
    args = parser.parse_args()

    engine = detect_engine(args.engine)
    if not engine.image_exists(args.image):
        sys.exit(f"{args.image} is not in {engine.name}'s storage")
    bench = Bench(engine, args.image)
    try:
        engine.run(["network", "create", bench.outbound])  # (the routed network every proxy joins)
        log(f"side by side: bare, {', '.join(TIERS)}, python imports ({engine.name}, {args.runs} rounds)")
        results = measure(bench, args.runs)
        log("breakdown of strict starts")
        steps, calls, totals = breakdown(bench, args.breakdown_runs)
    finally:
        bench.cleanup()
    report(bench, args.runs, results, steps, calls, totals)
    return 0


if __name__ == "__main__":
    try:
        with sigterm_unwinds():  # SIGTERM cleans up like Ctrl-C
            sys.exit(main())
    except (KeyboardInterrupt, Terminated):
        sys.exit("interrupted: what the benchmark made is removed")
