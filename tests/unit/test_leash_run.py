"""`run --enforcer leash`: the invocation of Leash's CLI, checked with a RECORDING STAND-IN for `leash`
(tests/standins/leash: Leash cannot be downloaded here; the stand-in records, it enforces nothing), and the
refusal of a host that cannot enforce a tier under Leash (this one: no BPF LSM, cgroup v1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sandbox import doctor, profiles
from agent_sandbox.compilers.leash import compile_leash

STANDINS = Path(__file__).resolve().parents[1] / "standins"
IMAGE = "localhost/agent-sandbox-devcontainer:latest"


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PATH": f"{STANDINS}:{os.environ['PATH']}",
        "LEASH_STANDIN_RECORD": str(tmp_path / "record.json"),
        "AGENT_SANDBOX_STATE": str(tmp_path / "state"),
        **(env or {}),
    }
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "run", "--workspace", str(workspace), "--name", "leashed", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def engine_with_image() -> bool:
    return subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True).returncode == 0


needs_image = pytest.mark.skipif(not engine_with_image(), reason=f"{IMAGE} is not built (make image)")
pytestmark = pytest.mark.container  # the image is inspected (and paranoid run) with podman


def host_can_enforce() -> bool:
    return not doctor.can_enforce_leash(doctor.gather(None))


@needs_image
def test_a_host_that_cannot_enforce_is_refused(tmp_path):
    if host_can_enforce():
        pytest.skip("this host could enforce Leash's rules")
    done = run(tmp_path, "--enforcer", "leash", "--tier", "strict", "shell")
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot enforce the profile under Leash" in done.stderr and "--allow-degraded" in done.stderr
    assert not (tmp_path / "record.json").exists(), "leash ran although the host was refused"


@needs_image
def test_the_leash_invocation(tmp_path):
    secret = "sk-leash-standin-" + os.urandom(4).hex()
    done = run(
        tmp_path,
        "--enforcer",
        "leash",
        "--allow-degraded",
        "--tier",
        "strict",
        "claude",
        "--",
        "-p",
        "hi",
        env={"ANTHROPIC_API_KEY": secret},
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    argv = record["argv"]
    state = tmp_path / "state" / "sandboxes" / "leashed"
    assert argv[argv.index("--policy") + 1] == str(state / "leash.cedar")
    assert record["policy"] == compile_leash(profiles.load_profile("strict"))
    assert argv[argv.index("--image") + 1] == IMAGE
    assert argv[argv.index("--leash-image") + 1] == "public.ecr.aws/s5i7k8t3/strongdm/leash:v1.1.5"
    assert "--listen=" in argv  # the Control UI (no authentication, all interfaces) off
    assert argv[argv.index("--") + 1 :][:1] == ["claude"] and argv[-2:] == ["-p", "hi"]
    assert ["-e", "ANTHROPIC_API_KEY"] == argv[
        argv.index("ANTHROPIC_API_KEY") - 1 : argv.index("ANTHROPIC_API_KEY") + 1
    ]
    assert secret not in " ".join(argv), "a key's value on leash's command line"
    assert record["env"]["ANTHROPIC_API_KEY"] == secret  # by name: leash reads it from its environment
    assert record["env"]["LEASH_LOG_DIR"] == str(state / "leash-log") and record["env"]["LEASH_DISABLE_TELEMETRY"]
    assert record["cwd"] == str(tmp_path / "ws")
    assert "under Leash 1.1.5" in done.stderr and "NOT the tier's flags" in done.stderr
    assert "DEGRADED" in done.stderr or host_can_enforce()
    assert oct((state / "leash.cedar").stat().st_mode & 0o777) == "0o600"


@needs_image
def test_auto_falls_back_to_the_container_layer_where_leash_cannot_enforce(tmp_path):
    if host_can_enforce():
        pytest.skip("this host could enforce Leash's rules")
    done = run(tmp_path, "--enforcer", "auto", "--tier", "paranoid", "shell", "--", "-c", "echo contained")
    assert done.returncode == 0 and done.stdout.strip() == "contained", done.stderr
    assert not (tmp_path / "record.json").exists()
