#!/usr/bin/env python3
"""Benchmark of the audit trail (not a test: it prints numbers).

Generates a mixed log (the egress proxy's JSON lines and Leash's logfmt lines, a few garbled) and measures, each in
a fresh process so that peak memory is the run's own:
  throughput   `audit summary` over N lines on one core (goal: at least 500,000 lines/s)
  vs grep      its ratio to `grep -c denied` on the same file
  memory       peak RSS for N/5 and for N lines (goal: flat, the parser streams)

    python bench/bench_audit.py              # 1,000,000 lines
    python bench/bench_audit.py --lines 200000
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROXY = (
    '{{"time":"2026-11-29T21:{m:02d}:{s:02d}.000Z","sandbox":"box-{b}","decision":"{d}","reason":"{r}",'
    '"client":"10.89.4.2","method":"CONNECT","host":"{h}","port":"443","url":"{h}:443","sni":"{h}",'
    '"status":200,"squid_status":"TCP_TUNNEL","server":"203.0.113.80","bytes_in":517,"bytes_out":4096,'
    '"duration_ms":31,"tls":"splice","error":"-","error_detail":"-"}}'
)
LEASH = [
    'time=2026-11-29T21:{m:02d}:{s:02d}Z event=file.open:ro pid=12 cgroup=3 exe="node" path="/usr/lib/x/{h}" '
    "decision={d}",
    'time=2026-11-29T21:{m:02d}:{s:02d}Z event=proc.exec pid=13 cgroup=3 exe="bash" path="/usr/bin/{h}" argc=1 '
    'argv="/usr/bin/{h}" decision={d}',
    'time=2026-11-29T21:{m:02d}:{s:02d}Z event=http.request protocol=https addr="{h}" path="/v1/x" decision={d} '
    'status=200 auth="Bearer sk-ant-xxxxxxxxxx"',
]
HOSTS = ["api.anthropic.com", "pypi.org", "registry.npmjs.org", "example.com", "github.com", "evil.test"]

RUN = """
import resource, sys, time
from agent_sandbox import audit
start = time.process_time()
stats = audit.Stats()
# what `audit summary` runs
result = audit.summarise([audit.Source(__import__("pathlib").Path(sys.argv[1]), {})], stats)
cpu = time.process_time() - start
print(stats.lines, stats.events, stats.garbled, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def generate(path: Path, lines: int) -> None:
    rng = random.Random(7)
    with path.open("w") as out:
        for i in range(lines):
            host, minute, second = rng.choice(HOSTS), (i // 60) % 60, i % 60
            decision = "denied" if host in ("example.com", "evil.test") else "allowed"
            if i % 997 == 0:
                out.write('{"time":"2026-11-29T21:00:00Z","sandbox":"box","decision"\n')  # a partial line
            elif i % 2:
                out.write(
                    PROXY.format(
                        m=minute,
                        s=second,
                        b=i % 8,
                        d=decision,
                        h=host,
                        r="not_allowlisted" if decision == "denied" else "-",
                    )
                    + "\n"
                )
            else:
                out.write(rng.choice(LEASH).format(m=minute, s=second, h=host, d=decision) + "\n")


def summary_run(path: Path) -> tuple[int, int, int, float, int]:
    out = subprocess.run([sys.executable, "-c", RUN, str(path)], capture_output=True, text=True, check=True).stdout
    lines, events, garbled, cpu, rss = out.split()
    return int(lines), int(events), int(garbled), float(cpu), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asbench-audit-") as tmp:
        small, large = Path(tmp) / "small.log", Path(tmp) / "large.log"
        generate(small, args.lines // 5)
        generate(large, args.lines)
        size = large.stat().st_size
        n_small = summary_run(small)
        lines, events, garbled, cpu, rss = summary_run(large)
        start = time.perf_counter()
        subprocess.run(["grep", "-c", "denied", str(large)], capture_output=True, check=False)
        grep = time.perf_counter() - start
    rate = lines / cpu
    print(f"log                {lines:,} lines, {size / 1e6:.0f} MB, {events:,} events, {garbled:,} garbled")
    print(
        f"audit summary      {cpu:.2f} s CPU on one core = {rate:,.0f} lines/s "
        f"(goal >= 500,000: {'met' if rate >= 500_000 else 'MISSED'})"
    )
    print(f"grep -c denied     {grep:.2f} s = {lines / grep:,.0f} lines/s; audit summary / grep = {cpu / grep:.1f}x")
    print(
        f"peak memory        {n_small[4] / 1024:.0f} MB for {n_small[0]:,} lines, {rss / 1024:.0f} MB for "
        f"{lines:,} lines (flat: {'yes' if rss < n_small[4] * 1.3 else 'NO'})"
    )


if __name__ == "__main__":
    main()
