"""The stand-in for the internet the egress tests talk to: a routed network of ours with two servers on it.

Never a real internet host: the servers run the test internet image (tests/images/internet) with the program in
tests/conformance/internet/, on a network whose addresses are in TEST-NET-2 (198.51.100.0/24, public-looking,
so that the proxy's private-address rule does not refuse them). The egress proxy of a test sandbox joins this
network as its routed one.

  main   web.stub.test, git.stub.test, api.provider.test, api.wild.test, deep.api.wild.test, wild.test,
         badwild.test: HTTP 80, HTTPS 443, HTTP 8080, SSH 22 (git), provider API stubs on 443
  other  other.stub.test, plain.stub.test: plain HTTP on 80, 443 and 8080 (a host no test profile lists, and a
         TLS port that would answer a TLS-less tunnel)
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from agent_sandbox.engine import Engine
from agent_sandbox.sandbox import new_name

IMAGE = "localhost/agent-sandbox-test-internet:latest"
PROGRAM = Path(__file__).resolve().parent / "internet"  # the server program (server.py, provider.py)
# One /26 per engine: both test passes may leave their networks at the same time (bridges must not overlap).
SUBNETS = {"podman": "198.51.100.128/26", "docker": "198.51.100.192/26"}
MAIN_NAMES = ("web.stub.test", "git.stub.test", "api.provider.test", "api.wild.test", "deep.api.wild.test",
              "wild.test", "badwild.test")
OTHER_NAMES = ("other.stub.test", "plain.stub.test")
REPLY = "STUB-REPLY-agent-sandbox-7f3a"  # what the provider stubs answer

# Made in a one-off container of the internet image (openssl, ssh-keygen): a test CA, a server certificate for
# every name and both addresses, and the key pair git over SSH logs in with.
SECRETS_SCRIPT = """
set -eu
cd /out
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=agent-sandbox test CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=web.stub.test" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\n' "$1" > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
  -out server.pem 2>/dev/null
ssh-keygen -q -t ed25519 -N '' -C agent-sandbox-test -f ssh_key
chmod 0644 ca.pem server.pem server.key ssh_key ssh_key.pub
"""


@attrs.frozen
class Internet:
    engine: Engine
    network: str
    main: str  # the main server's address
    other: str  # the other server's address
    token: str
    state: Path  # the main server's state directory (its request log)
    secrets: Path  # ca.pem, ssh_key

    @property
    def ca(self) -> Path:
        return self.secrets / "ca.pem"

    @property
    def ssh_key(self) -> Path:
        return self.secrets / "ssh_key"

    def requests(self) -> list[dict[str, Any]]:
        log = self.state / "requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def addresses(subnet: str) -> tuple[str, str]:
    hosts = list(ipaddress.ip_network(subnet).hosts())
    return str(hosts[9]), str(hosts[10])


def start(engine: Engine, base: Path) -> Iterator[Internet]:
    """The network and both servers; everything removed again when the generator is closed."""
    network = f"agent-sandbox-test-internet-{engine.name}"
    subnet = SUBNETS[engine.name]
    main, other = addresses(subnet)
    token = secrets.token_hex(16)
    made = base / "internet-secrets"
    made.mkdir()
    made.chmod(0o755)
    names = ",".join([*(f"DNS:{n}" for n in MAIN_NAMES + OTHER_NAMES), f"IP:{main}", f"IP:{other}"])
    engine.run(["run", "--rm", "--network=none", "--entrypoint=/bin/sh", f"--volume={made}:/out", IMAGE,
                "-c", SECRETS_SCRIPT, "secrets", names])
    if engine.network_exists(network):  # left by an interrupted run
        engine.remove_network(network)
    engine.run(["network", "create", f"--subnet={subnet}", network])
    containers: list[str] = []
    try:
        states = {}
        for role, address, aliases, ssh in (("main", main, MAIN_NAMES, True), ("other", other, OTHER_NAMES, False)):
            state = base / f"internet-{role}"
            state.mkdir()
            name = new_name(f"as-internet-{role}")
            argv = ["run", "--detach", f"--name={name}", f"--network={network}", f"--ip={address}",
                    *(f"--network-alias={alias}" for alias in aliases),
                    f"--volume={PROGRAM}:/srv/internet:ro", f"--volume={made}:/srv/secrets:ro",
                    f"--volume={state}:/srv/state", IMAGE,
                    "--state", "/srv/state", "--token", token, "--reply", REPLY,
                    "--cert", "/srv/secrets/server.pem", "--key", "/srv/secrets/server.key"]
            if ssh:
                argv += ["--ssh-key", (made / "ssh_key.pub").read_text().strip()]
            else:
                argv.append("--plain-443")
            engine.run(argv)
            containers.append(name)
            states[role] = state
        deadline = time.monotonic() + 60
        while not all((s / "ready").exists() for s in states.values()):
            if time.monotonic() > deadline:
                logs = {c: engine.run(["logs", c], check=False).err[-500:] for c in containers}
                raise RuntimeError(f"the test internet did not come up: {logs}")
            time.sleep(0.2)
        yield Internet(engine, network, main, other, token, states["main"], made)
    finally:
        for name in containers:
            engine.remove_container(name)
        engine.remove_network(network)
