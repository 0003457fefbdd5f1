"""The image as a target of StrongDM Leash's runner, started exactly as the runner starts it, with a STAND-IN for
Leash's leash-entry (tests/standins/leash-entry: the real one comes from Leash's release, which cannot be downloaded
here; the stand-in takes its steps, it enforces nothing).

The bootstrap runs as root (the image's USER) and installs the CA; every command that enters afterwards the way the
runner enters it (`exec -i -w <cwd> <target> bash -lc 'exec <command>'`) runs as the image's user, without
capabilities, with no_new_privs, with no way to root — and trusts the installed CA (OpenSSL/curl, Python, Node with
--use-openssl-ca). A weakened image (the login hook gone) must fail the same checks.
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox.conformance import ConformanceFailure, cap_names, parse_status
from agent_sandbox.conformance.session import Session
from agent_sandbox.sandbox import new_name

from . import testnet

STANDIN = Path(__file__).resolve().parents[1] / "standins" / "leash-entry"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
HOOK = "/etc/profile.d/00-agent-sandbox-user.sh"

# What a command entering the target runs (through the runner's `bash -lc 'exec ...'`): who it is, its caps, and
# its attempts at root and at TLS with the CA the bootstrap installed.
PROBE = r"""
echo "uid=$(id -u)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status
if command -v sudo >/dev/null; then sudo -n id -u 2>&1 | sed 's/^/sudo: /'; else echo "sudo: absent"; fi
su -c 'id -u' root </dev/null 2>&1 | sed 's/^/su: /' || true
echo "setuid: $(find / -xdev -perm /6000 -type f 2>/dev/null | wc -l)"
curl -sS --max-time 20 https://web.stub.test/token && echo " <- curl"
python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode(), "<- python")' https://web.stub.test/token
node -e 'require("https").get(process.argv[1], r => { let b = ""; r.on("data", d => b += d); r.on("end", () => console.log(b, "<- node")); }).on("error", e => console.log("node error", e.message))' https://web.stub.test/token
"""


def start_target(session: Session, internet: testnet.Internet, workspace: Path, share: Path, *extra: str) -> str:
    """`docker run` as Leash's runner does it (internal/runner/runner.go ~1815-1966): its entrypoint, host cgroup
    namespace, the share and the working directory mounted, no command, no --user, no --cap-*, no --security-opt."""
    name = new_name("as-leash-target")
    session.engine.run(
        [
            "run",
            "-d",
            f"--name={name}",
            f"--entrypoint=/leash/leash-entry-linux-{ARCH}",
            "--cgroupns=host",
            "-v",
            f"{share}:/leash",
            "-v",
            f"{workspace}:{workspace}",
            "-w",
            str(workspace),
            "-e",
            "LEASH_DIR=/leash",
            "-e",
            "LEASH_ENTRY_READY_FILE=/leash/bootstrap.ready",
            "-e",
            "NODE_OPTIONS=--use-openssl-ca",
            *extra,
            session.image,
        ]
    )
    session.engine.run(["network", "connect", internet.network, name])  # (the test internet stands for the world)
    return name


def bootstrap(session: Session, internet: testnet.Internet, share: Path, name: str) -> None:
    shutil.copy(internet.ca, share / "ca-cert.pem")  # what leashd hands over: its CA (here: the test CA)
    (share / "leash-entry.ready").write_text("")
    deadline = time.monotonic() + 60
    while not (share / "bootstrap.ready").exists():
        if time.monotonic() > deadline or not session.engine.running(name):
            logs = session.engine.run(["logs", name], check=False)
            raise ConformanceFailure(f"the bootstrap did not finish: {(logs.out + logs.err).strip()[-500:]}")
        time.sleep(0.2)


def enter(session: Session, name: str, workspace: Path) -> str:
    """The runner's exec: `exec -i -w <cwd> <target> bash -lc 'exec <command>'` (runner.go ~2371-2443)."""
    done = session.engine.run(
        ["exec", "-i", "-w", str(workspace), name, "bash", "-lc", f"exec sh -c {_quote(PROBE)}"],
        check=False,
        timeout=120,
    )
    return done.out + done.err


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def check_entered(out: str, uid: int, token: str) -> None:
    lines = out.splitlines()
    status = parse_status(
        "\n".join(
            line for line in lines if ":" in line and line.split(":")[0] in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs")
        )
    )
    if f"uid={uid}" not in lines:
        raise ConformanceFailure(
            f"the command entered as {next((x for x in lines if x.startswith('uid=')), '?')}, "
            f"not as the image's user {uid}"
        )
    for field in ("CapEff", "CapPrm", "CapBnd"):
        caps = cap_names(int(status.get(field, "0"), 16))
        if caps:
            raise ConformanceFailure(f"{field} holds {sorted(caps)}")
    if status.get("NoNewPrivs") != "1":
        raise ConformanceFailure(f"NoNewPrivs is {status.get('NoNewPrivs')!r}")
    roots = [x for x in lines if x.startswith(("sudo: ", "su: ")) and x.split(": ", 1)[1].strip() == "0"]
    if roots:
        raise ConformanceFailure(f"became root: {roots}")
    for client in ("curl", "python", "node"):
        if not any(x.startswith(token) and x.endswith(f"<- {client}") for x in lines):
            raise ConformanceFailure(f"{client} does not trust the CA the bootstrap installed:\n{out[-800:]}")


@pytest.fixture
def target_dirs(session: Session) -> tuple[Path, Path]:
    share = session.base / f"leash-share-{new_name('s')[-6:]}"
    share.mkdir(mode=0o755)
    shutil.copy(STANDIN, share / f"leash-entry-linux-{ARCH}")
    return session.new_workspace("leash"), share


def run_target(session: Session, internet: testnet.Internet, dirs: tuple[Path, Path], *extra: str) -> str:
    workspace, share = dirs
    name = start_target(session, internet, workspace, share, *extra)
    try:
        bootstrap(session, internet, share, name)
        return enter(session, name, workspace)
    finally:
        session.engine.remove_container(name)


def test_the_image_is_a_leash_target_that_never_gives_the_agent_root(session, internet, target_dirs):
    out = run_target(session, internet, target_dirs)
    check_entered(out, session.uid, internet.token)
    assert "setuid: 0" in out.splitlines(), f"setuid or setgid files in the image:\n{out}"


def test_without_the_login_hook_the_checks_see_root(session, internet, target_dirs):
    """The weakened image: the hook masked (as if the image had none), the command stays root."""
    out = run_target(session, internet, target_dirs, "-v", f"/dev/null:{HOOK}:ro")
    with pytest.raises(ConformanceFailure, match="entered as uid=0"):
        check_entered(out, session.uid, internet.token)


@pytest.mark.area("leash target")  # per tier: the plugin parametrizes `tier` for tests with an area
def test_our_own_runs_never_pass_through_root(session, probe: Any, expected):
    """agent-sandbox's runs start as the user from the first instruction: PID 1 is not root."""
    status = probe.status("1")
    assert status["Uid"].split()[0] == str(expected.uid), status["Uid"]
