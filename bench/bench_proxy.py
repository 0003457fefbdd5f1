#!/usr/bin/env python3
"""Benchmark of the egress proxy (not a test: it prints numbers and never fails on a missed goal).

Issue: "Proxy: added p50 latency per request and throughput of a 100 MB download vs a direct connection on the
same host: goal under 1 ms added, at least 90% of direct".

Real parts, all on this host:
  server   a small HTTP/1.1 server of ours (python3 in the test internet image, localhost/agent-sandbox-test-
           internet) on a routed network of ours with a TEST-NET-3 address, HTTPS on 443 (a throwaway test CA
           made with openssl, as tests/conformance/testnet.py does) and plain HTTP on 80
  proxied  a real strict-shaped sandbox (runtime.start_sandbox) whose Squid proxy uses that network as its routed
           one; the profile inherits strict and allowlists the server's name (the proxy resolves it through
           proxy_hosts). The client runs in the agent container and goes through the proxy with CONNECT.
  direct   a container of the same agent image attached to the routed network itself (no proxy).

The clients are python3 (http.client, ssl) in those containers, driven by `<engine> exec`; every time is taken
inside the container, so exec's own cost is not in any number. Measured side by side, in turns (batches of
direct and proxied alternate, each round starting with the other one):

  latency, new connection    --requests small GETs (100-byte body), each on a new connection: TCP + TLS to the
                             server, through the proxy also CONNECT (Squid peeks at the ClientHello, checks the SNI,
                             splices); p50 and p90 per request
  latency, keep-alive        --requests small GETs on one open connection (one CONNECT tunnel): the relay's cost
  throughput, HTTPS          a --download-mb MB GET (median of --downloads), TLS end to end (Squid only splices)
  throughput, plain HTTP     the same over plain HTTP in a CONNECT tunnel to :80 (no TLS cost in client and server,
                             so the relay's share shows)
  CPU per download           what client (its process time), server and Squid (their containers' cgroups) spent
                             per download: on a small host the proxy's CPU comes out of the same cores

    PYTHONPATH=build python bench/bench_proxy.py                 # podman
    PYTHONPATH=build python bench/bench_proxy.py --engine docker --requests 400 --downloads 9

Everything it makes is named asbench-* (network, server, direct client, the sandbox, its proxy and network) and
removed again, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from agent_sandbox import egress, profiles, runtime
from agent_sandbox.engine import Engine, detect_engine
from agent_sandbox.signals import Terminated, sigterm_unwinds

AGENT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
SERVER_IMAGE = "localhost/agent-sandbox-test-internet:latest"
NAME = "bench.stub.test"  # the server's name: allowlisted, resolved by the proxy through proxy_hosts
# TEST-NET-3, one /26 per engine (never the conformance suite's TEST-NET-2 subnets: both may run at once)
SUBNETS = {"podman": "203.0.113.0/26", "docker": "203.0.113.64/26"}

PROFILE = f"""\
name: asbench-proxy
inherits: strict
description: bench/bench_proxy.py - strict, plus the benchmark's own server
network:
  allow:
    - "{NAME}:443"
    - "{NAME}:80"
"""

CERT_SCRIPT = """
set -eu
cd /out
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=asbench test CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:%s\\nbasicConstraints=CA:FALSE\\n' "$1" > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf \
  -out server.pem 2>/dev/null
chmod 0644 ca.pem server.pem server.key
"""

# The server: HTTP/1.1 with keep-alive, TCP_NODELAY, every small answer in one write; /big?bytes=N streams N bytes.
SERVER = r"""
import http.server, socketserver, ssl, sys, threading
CHUNK = memoryview(bytes(1 << 20))
SMALL = b"x" * 100
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def setup(self):
        if self.server.tls is not None:  # the handshake in this connection's thread
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path.startswith("/big?bytes="):
            left = int(self.path.split("=", 1)[1])
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % left)
            while left > 0:
                size = min(left, len(CHUNK))
                self.wfile.write(CHUNK[:size])
                left -= size
        else:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(SMALL), SMALL))
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
threads = []
for port, tls in ((443, context), (80, None)):
    server = Server(("0.0.0.0", port), Handler)
    server.tls = tls
    threads.append(threading.Thread(target=server.serve_forever, daemon=True))
    threads[-1].start()
print("serving", flush=True)
for thread in threads:
    thread.join()
"""

KEEPALIVE = "trap 'exit 0' TERM; while sleep 1000 & wait $!; do :; done"  # the direct client's PID 1

# The client (python3 in the agent image): one JSON line of seconds per request, or per download.
CLIENT = r"""
import http.client, json, socket, ssl, sys, time
mode, via, host, port, count, proxy_host, proxy_port, size = sys.argv[1:9]
port, count, size = int(port), int(count), int(size)
context = ssl.create_default_context(cafile="/workspace/ca.pem")
def connect():
    if via == "direct":
        target = (host, port)
    else:
        target = (proxy_host, int(proxy_port))
    if port == 443:
        conn = http.client.HTTPSConnection(*target, context=context)
    else:
        conn = http.client.HTTPConnection(*target)
    if via != "direct":
        conn.set_tunnel(host, port)  # CONNECT host:port; TLS (SNI = host) inside the tunnel
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if port == 443:
        versions.add(conn.sock.version())
    return conn
def get(conn, path):
    conn.request("GET", path, headers={"Host": host})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"status {response.status}")
    return body
times, versions = [], set()
cpu = time.process_time()
if mode == "new":
    for _ in range(count):
        start = time.perf_counter()
        conn = connect()
        get(conn, "/small")
        conn.close()
        times.append(time.perf_counter() - start)
elif mode == "keepalive":
    conn = connect()
    get(conn, "/small")
    for _ in range(count):
        start = time.perf_counter()
        get(conn, "/small")
        times.append(time.perf_counter() - start)
    conn.close()
else:
    buffer = memoryview(bytearray(1 << 20))
    for _ in range(count):
        conn = connect()
        start = time.perf_counter()
        conn.request("GET", f"/big?bytes={size}", headers={"Host": host})
        response = conn.getresponse()
        got = 0
        while True:
            n = response.readinto(buffer)
            if not n:
                break
            got += n
        times.append(time.perf_counter() - start)
        conn.close()
        if got != size:
            raise SystemExit(f"got {got} of {size} bytes")
print(json.dumps({"times": times, "cpu": time.process_time() - cpu, "tls": sorted(versions)}))
"""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    """What the benchmark made, to remove again in reverse order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        token = secrets.token_hex(3)
        self.network = f"asbench-net-{token}"
        self.server = f"asbench-server-{token}"
        self.direct = f"asbench-direct-{token}"
        self.sandbox = f"asbench-proxy-{token}"
        self.tmp = Path(tempfile.mkdtemp(prefix="asbench-proxy."))
        self.tmp.chmod(0o755)
        self.containers: list[str] = []
        self.network_made = False
        self.box: runtime.Sandbox | None = None

    def cleanup(self) -> None:
        if self.box is not None:
            self.box.remove()
        runtime.remove_leftovers(self.engine, self.sandbox)  # (if its start was interrupted half-way)
        for name in reversed(self.containers):
            self.engine.remove_container(name)
        if self.network_made:
            self.engine.remove_network(self.network)
        shutil.rmtree(self.tmp, ignore_errors=True)


def setup(bench: Bench, agent_image: str) -> tuple[str, str]:
    """The certificates, the routed network, the server and the direct client; the server's address."""
    engine = bench.engine
    subnet = SUBNETS[engine.name]
    address = subnet.rsplit(".", 1)[0] + "." + str(int(subnet.rsplit(".", 1)[1].split("/")[0]) + 10)
    made = bench.tmp / "secrets"
    workspace = bench.tmp / "workspace"
    for directory in (made, workspace):
        directory.mkdir()
        directory.chmod(0o755)
    engine.run(
        [
            "run",
            "--rm",
            f"--name=asbench-certs-{secrets.token_hex(3)}",
            "--network=none",
            "--entrypoint=/bin/sh",
            f"--volume={made}:/out",
            SERVER_IMAGE,
            "-c",
            CERT_SCRIPT,
            "certs",
            NAME,
        ]
    )
    (made / "server.py").write_text(SERVER)
    shutil.copy(made / "ca.pem", workspace / "ca.pem")
    (workspace / "client.py").write_text(CLIENT)
    for path in workspace.iterdir():
        path.chmod(0o644)

    engine.run(["network", "create", f"--subnet={subnet}", bench.network])
    bench.network_made = True
    bench.containers.append(bench.server)
    engine.run(
        [
            "run",
            "--detach",
            f"--name={bench.server}",
            f"--network={bench.network}",
            f"--ip={address}",
            f"--volume={made}:/srv/bench:ro",
            "--entrypoint=python3",
            SERVER_IMAGE,
            "/srv/bench/server.py",
            "/srv/bench/server.pem",
            "/srv/bench/server.key",
        ]
    )
    bench.containers.append(bench.direct)
    engine.run(
        [
            "run",
            "--detach",
            f"--name={bench.direct}",
            f"--network={bench.network}",
            f"--add-host={NAME}:{address}",
            f"--volume={workspace}:/workspace:ro",
            "--entrypoint=/bin/sh",
            agent_image,
            "-c",
            KEEPALIVE,
        ]
    )
    deadline = time.monotonic() + 30
    while "serving" not in engine.run(["logs", bench.server], check=False).out:
        if time.monotonic() > deadline:
            sys.exit(f"the server did not start: {engine.run(['logs', bench.server], check=False).err[-800:]}")
        time.sleep(0.1)
    return address, str(workspace)


def start_proxied(bench: Bench, agent_image: str, address: str, workspace: str) -> runtime.Sandbox:
    path = bench.tmp / "asbench-proxy.yaml"
    path.write_text(PROFILE)
    profile = profiles.load_profile(path)
    bench.box = runtime.start_sandbox(
        agent_image,
        profile,
        engine=bench.engine,
        workspace=Path(workspace),
        name=bench.sandbox,
        state_dir=bench.tmp / "state",
        proxy_hosts=((NAME, address),),
        outbound_network=bench.network,
    )
    return bench.box


def cpu_seconds(engine: Engine, container: str) -> float | None:
    """CPU time a container has used so far, from its cgroup (v2 cpu.stat, v1 cpuacct.usage); None if unreadable."""
    pid = engine.run(["inspect", "--format", "{{.State.Pid}}", container], check=False).out.strip()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "" and Path(f"/sys/fs/cgroup{path}/cpu.stat").exists():
                stat = dict(line.split() for line in Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text().splitlines())
                return int(stat["usage_usec"]) / 1e6
            if "cpuacct" in controllers.split(","):
                for mount in (controllers, "cpuacct", "cpu,cpuacct"):
                    usage = Path(f"/sys/fs/cgroup/{mount}{path}/cpuacct.usage")
                    if usage.exists():
                        return int(usage.read_text()) / 1e9
    except (OSError, ValueError, KeyError):
        pass
    return None


@attrs.define
class Side:
    """One side's measurements: seconds per request (or download), and CPU seconds used by each party."""

    times: list[float] = attrs.field(factory=list)
    cpu: dict[str, float] = attrs.field(factory=dict)
    tls: set[str] = attrs.field(factory=set)


def client(bench: Bench, via: str, mode: str, port: int, count: int, size: int, side: Side) -> None:
    """One batch of `count` measurements by the client in `via`'s container; with `size`, the CPU seconds the
    client (its own process time), the server and (proxied) the proxy spent on it (their cgroups)."""
    engine = bench.engine
    container = bench.direct if via == "direct" else bench.sandbox
    parties = {"server": bench.server} | ({"proxy (Squid)": f"{bench.sandbox}-proxy"} if via != "direct" else {})
    before = {party: cpu_seconds(engine, name) for party, name in parties.items()} if size else {}
    argv = [
        "exec",
        container,
        "python3",
        "/workspace/client.py",
        mode,
        via,
        NAME,
        str(port),
        str(count),
        egress.PROXY_HOST,
        str(egress.PROXY_PORT),
        str(size),
    ]
    result = engine.run(argv, check=False, timeout=600)
    if not result.ok:
        sys.exit(f"the {via} client failed ({mode}, port {port}): {result.err.strip()[-1500:]}")
    answer = json.loads(result.out.strip().splitlines()[-1])
    side.times += [float(t) for t in answer["times"]]
    side.tls.update(answer["tls"])
    if size:
        side.cpu["client"] = side.cpu.get("client", 0.0) + float(answer["cpu"])
        for party, name in parties.items():
            after, earlier = cpu_seconds(engine, name), before[party]
            if after is not None and earlier is not None:
                side.cpu[party] = side.cpu.get(party, 0.0) + after - earlier


def side_by_side(bench: Bench, mode: str, port: int, total: int, rounds: int, size: int = 0) -> dict[str, Side]:
    """`total` measurements per side, in `rounds` batches alternating direct and proxied (each round starting with
    the other), after one unmeasured warm-up batch each."""
    out = {"direct": Side(), "proxied": Side()}
    for via in out:
        client(bench, via, mode, port, 1 if size else 10, size, Side())
    per = [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]
    for index, count in enumerate(c for c in per if c):
        order = ("direct", "proxied") if index % 2 == 0 else ("proxied", "direct")
        for via in order:
            client(bench, via, mode, port, count, size, out[via])
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("podman", "docker"), default=None, help="default: detect")
    parser.add_argument("--image", default=AGENT_IMAGE, help="the agent image (runs the clients)")
    parser.add_argument("--requests", type=int, default=200, help="small requests per side and mode")
    parser.add_argument("--rounds", type=int, default=4, help="alternating batches the requests are split into")
    parser.add_argument("--download-mb", type=int, default=100)
    parser.add_argument("--downloads", type=int, default=5, help="downloads per side and protocol (median)")
    args = parser.parse_args()

    engine = detect_engine(args.engine)
    for image in (args.image, SERVER_IMAGE, f"localhost/{egress.PROXY_IMAGE_NAME}:latest"):
        if not engine.image_exists(image):
            sys.exit(f"{image} is not in {engine.name}'s storage")
    bench = Bench(engine)
    size = args.download_mb * 1_000_000
    results: dict[str, dict[str, Side]] = {}
    try:
        log(f"setting up on {engine.name}: network {bench.network}, server, direct client, sandbox {bench.sandbox}")
        address, workspace = setup(bench, args.image)
        box = start_proxied(bench, args.image, address, workspace)
        log(f"latency, new connection per request ({args.requests} per side)")
        results["new"] = side_by_side(bench, "new", 443, args.requests, args.rounds)
        log(f"latency, keep-alive ({args.requests} per side)")
        results["keepalive"] = side_by_side(bench, "keepalive", 443, args.requests, args.rounds)
        log(f"throughput, HTTPS, {args.download_mb} MB x {args.downloads} per side")
        results["https"] = side_by_side(bench, "download", 443, args.downloads, args.downloads, size)
        log(f"throughput, plain HTTP in a CONNECT tunnel, {args.download_mb} MB x {args.downloads} per side")
        results["http"] = side_by_side(bench, "download", 80, args.downloads, args.downloads, size)
        logged = [json.loads(line) for line in box.plan.log_file.read_text().splitlines() if line.strip()]
    finally:
        with contextlib.suppress(Exception):
            bench.cleanup()
    report(engine, args, results, logged)
    return 0


def report(engine: Engine, args: Any, results: dict[str, dict[str, Side]], logged: list[dict[str, Any]]) -> None:
    tls = sorted(set().union(*(side.tls for sides in results.values() for side in sides.values())))
    print(
        f"\negress proxy vs direct, {engine.name}, same host (server: python3 HTTP/1.1 server of ours; "
        f"clients: python3 http.client in the agent image; HTTPS = {', '.join(tls)} end to end, Squid peeks at "
        "the ClientHello and splices)\n"
    )
    print(
        f"{'latency per small GET (ms)':<34} {'direct p50':>10} {'proxied p50':>11} {'added p50':>10} "
        f"{'direct p90':>10} {'proxied p90':>11}"
    )
    added = {}
    for key, label in (("new", "new connection (CONNECT + TLS)"), ("keepalive", "keep-alive (one tunnel)")):
        d, p = results[key]["direct"].times, results[key]["proxied"].times
        added[key] = (pct(p, 0.5) - pct(d, 0.5)) * 1000
        print(
            f"{label:<34} {pct(d, 0.5) * 1000:>10.3f} {pct(p, 0.5) * 1000:>11.3f} {added[key]:>+10.3f} "
            f"{pct(d, 0.9) * 1000:>10.3f} {pct(p, 0.9) * 1000:>11.3f}"
        )
    print(f"({args.requests} requests per side and mode, in {args.rounds} alternating batches)\n")
    print(f"{'throughput, ' + str(args.download_mb) + ' MB download':<34} {'direct':>10} {'proxied':>11} {'ratio':>10}")
    ratios = {}
    for key, label in (("https", "HTTPS (CONNECT to :443)"), ("http", "plain HTTP (CONNECT to :80)")):
        d = args.download_mb / statistics.median(results[key]["direct"].times)
        p = args.download_mb / statistics.median(results[key]["proxied"].times)
        ratios[key] = p / d
        print(f"{label:<34} {d:>7.0f} MB/s {p:>7.0f} MB/s {p / d:>9.0%}")
    print(f"(median of {args.downloads} per side, alternating)\n")

    print(
        f"CPU seconds per {args.download_mb} MB download       client   server    proxy   sum   (host: "
        f"{os.cpu_count()} CPUs)"
    )
    for key, label in (("https", "HTTPS"), ("http", "plain HTTP")):
        for via in ("direct", "proxied"):
            cpu = {party: spent / args.downloads for party, spent in results[key][via].cpu.items()}
            squid = cpu.get("proxy (Squid)")
            cells = [f"{cpu[p]:>8.3f}" if p in cpu else f"{'-':>8}" for p in ("client", "server", "proxy (Squid)")]
            cap = f"  Squid alone: <= {args.download_mb / squid:.0f} MB/s per core" if squid else ""
            print(f"  {label + ', ' + via:<36}{''.join(cells)} {sum(cpu.values()):>6.3f}{cap}")
    print()

    through = sum(1 for line in logged if line.get("decision") == "allowed" and line.get("host") == NAME)
    print(
        f"the proxy's log: {through} allowed transactions to {NAME}, "
        f"{sum(1 for line in logged if line.get('decision') != 'allowed')} denied"
    )
    for key, label in (("new", "new connection"), ("keepalive", "keep-alive")):
        verdict = "met" if added[key] < 1.0 else "MISSED"
        print(f"goal: added p50 < 1 ms ({label}): {added[key]:+.3f} ms -> {verdict}")
    for key, label in (("https", "HTTPS"), ("http", "plain HTTP")):
        verdict = "met" if ratios[key] >= 0.9 else "MISSED"
        print(f"goal: throughput >= 90% of direct ({label}): {ratios[key]:.0%} -> {verdict}")


if __name__ == "__main__":
    try:
        with sigterm_unwinds():  # SIGTERM cleans up like Ctrl-C
            sys.exit(main())
    except (KeyboardInterrupt, Terminated):
        sys.exit("interrupted: what the benchmark made is removed")
