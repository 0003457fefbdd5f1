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
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import testinfra

from agent_sandbox import egress, runtime
from agent_sandbox.conformance import ConformanceFailure
from agent_sandbox.conformance import egress as proxy
from agent_sandbox.engine import Engine
from agent_sandbox.model import Profile
from agent_sandbox.sandbox import new_name

if TYPE_CHECKING:
    from agent_sandbox.conformance.session import Session

IMAGE = "localhost/agent-sandbox-test-internet:latest"
PROGRAM = Path(__file__).resolve().parent / "internet"  # the server program (server.py, provider.py)
# One /26 per engine: both test passes may leave their networks at the same time (bridges must not overlap).
SUBNETS = {"podman": "198.51.100.128/26", "docker": "198.51.100.192/26"}
MAIN_NAMES = (
    "web.stub.test",
    "git.stub.test",
    "api.provider.test",
    "api.wild.test",
    "deep.api.wild.test",
    "wild.test",
    "badwild.test",
)
OTHER_NAMES = ("other.stub.test", "plain.stub.test")
# The providers' real API names: the test proxy resolves them to the main server (--proxy-host), which answers
# their APIs (provider.py); its certificate names them too, signed by the test CA.
PROVIDER_NAMES = ("api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com")
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

    def provider_hosts(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, self.main) for name in PROVIDER_NAMES)

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
    names = ",".join([*(f"DNS:{n}" for n in MAIN_NAMES + OTHER_NAMES + PROVIDER_NAMES), f"IP:{main}", f"IP:{other}"])
    engine.run(
        [
            "run",
            "--rm",
            "--network=none",
            "--entrypoint=/bin/sh",
            f"--volume={made}:/out",
            IMAGE,
            "-c",
            SECRETS_SCRIPT,
            "secrets",
            names,
        ]
    )
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
            argv = [
                "run",
                "--detach",
                f"--name={name}",
                f"--network={network}",
                f"--ip={address}",
                *(f"--network-alias={alias}" for alias in aliases),
                f"--volume={PROGRAM}:/srv/internet:ro",
                f"--volume={made}:/srv/secrets:ro",
                f"--volume={state}:/srv/state",
                IMAGE,
                "--state",
                "/srv/state",
                "--token",
                token,
                "--reply",
                REPLY,
                "--cert",
                "/srv/secrets/server.pem",
                "--key",
                "/srv/secrets/server.key",
            ]
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


# Names only the proxy resolves, to addresses a rebinding attacker would pick: its own loopback, cloud metadata.
PROXY_HOSTS = (("rebind.stub.test", "127.0.0.1"), ("meta.stub.test", "169.254.169.254"))


@attrs.frozen
class Egress:
    """A proxied sandbox of the test profile, on the test internet."""

    box: runtime.Sandbox
    internet: Internet
    profile: Profile

    @property
    def host(self) -> Any:
        return testinfra.get_host(self.box.host_spec)

    def ask(self, question: proxy.Ask) -> proxy.Answer:
        argument = question.argument(egress.PROXY_HOST, egress.PROXY_PORT, "/etc/ssl/certs/ca-certificates.crt")
        result = self.host.run("timeout 30 python3 -c %s %s", proxy.PROXY_CLIENT, argument)
        if result.rc != 0:
            raise ConformanceFailure(f"the proxy client failed ({result.rc}): {result.stderr.strip()[-300:]}")
        return proxy.Answer.parse(result.stdout)

    def log(self) -> list[dict[str, Any]]:
        return proxy.log_lines(self.box.plan.log_file.read_text())

    def ask_direct(self, address: str) -> bool:
        """Whether the agent opens a TCP connection to address:80 itself, without the proxy."""
        script = (
            "import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 80), timeout=4).close()\n"
            "    print('yes')\nexcept OSError:\n    print('no')"
        )
        return bool(self.host.run("python3 -c %s %s", script, address).stdout.strip() == "yes")

    def addresses(self, host: str) -> tuple[str, ...]:
        """What the proxy resolves `host` to (for the model)."""
        pinned = dict(PROXY_HOSTS)
        if host in pinned:
            return (pinned[host],)
        if re.fullmatch(r"[0-9.]+", host):
            return (host,)
        return (self.internet.other,) if host in OTHER_NAMES else (self.internet.main,)


def start_egress(session: Session, internet: Internet, profile: Profile, label: str, **tweaks: Any) -> Egress:
    """A sandbox of `profile` whose proxy's routed network is the test internet (`tweaks`: start_sandbox's)."""
    tweaks.setdefault("proxy_hosts", PROXY_HOSTS)
    box = runtime.start_sandbox(
        session.image,
        profile,
        engine=session.engine,
        workspace=session.new_workspace(label),
        name=runtime.new_name(f"as-egress-{label}"),
        host_env=session.host_env(),
        uid=session.uid,
        gid=session.gid,
        state_dir=session.base / f"state-egress-{label}",
        ca_bundle=internet.ca,
        outbound_network=internet.network,
        **tweaks,
    )
    session.extra.append(box)
    return Egress(box, internet, profile)
