"""A proxied tier as a devcontainer, brought up by the real Dev Containers CLI: `policy compile strict --target
devcontainer -o .devcontainer` writes a Compose-based devcontainer (the agent, its internal network, its egress
proxy) that `devcontainer up` starts by itself on docker (docker-compose) and on podman (podman-compose)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox.conformance.session import Session

COMPOSE = {"docker": "docker-compose", "podman": str(Path(sys.executable).parent / "podman-compose")}


def tool_args(session: Session) -> list[str]:
    if session.engine.name == "podman":
        return ["--docker-path", "podman", "--docker-compose-path", COMPOSE["podman"]]
    return ["--docker-path", "docker", "--docker-compose-path", COMPOSE["docker"]]


def devcontainer(
    session: Session, folder: Path, command: str, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`devcontainer COMMAND --workspace-folder F <engine options> ARGS` (exec: ARGS is the command to run)."""
    env = {**session.host_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["devcontainer", command, "--workspace-folder", str(folder), *tool_args(session), *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture
def project(session: Session, tmp_path: Path) -> Any:
    if shutil.which("devcontainer") is None:
        pytest.fail("the Dev Containers CLI is not installed (make setup installs it from npm)", pytrace=False)
    compose = COMPOSE[session.engine.name]
    if shutil.which(compose) is None:
        pytest.fail(f"{compose} is not installed (make setup installs it)", pytrace=False)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README").write_text("a project under a strict devcontainer\n")
    subnet = f"10.{random.randint(220, 223)}.{random.randint(0, 255)}.0/24"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_sandbox.cli",
            "policy",
            "compile",
            "strict",
            "--target",
            "devcontainer",
            "--image",
            session.image,
            "--subnet",
            subnet,
            "-o",
            str(folder / ".devcontainer"),
        ],
        text=True,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    state: dict[str, Any] = {"folder": folder, "project": None}
    yield state
    if state["project"]:
        subprocess.run(
            [
                compose,
                "--project-name",
                state["project"],
                "-f",
                str(folder / ".devcontainer" / "compose.yaml"),
                "down",
                "-v",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        )


PROBE = r"""
id -u
grep CapEff /proc/self/status
curl -sS -o /dev/null --max-time 20 https://example.com/ 2>&1 | tail -1
curl -sS -k -o /dev/null -w 'pypi %{http_code}\n' --max-time 30 https://pypi.org/simple/ 2>&1 | tail -1
getent hosts pypi.org || echo 'no dns'
"""


def test_devcontainer_up_brings_the_tier_with_its_proxy(session, project):
    up = devcontainer(session, project["folder"], "up")
    assert up.returncode == 0, up.stdout[-1500:] + up.stderr[-1500:]
    result = json.loads(up.stdout.strip().splitlines()[-1])
    project["project"] = result["composeProjectName"]
    assert result["outcome"] == "success" and result["remoteUser"] == "vscode"
    done = devcontainer(session, project["folder"], "exec", "bash", "-c", PROBE)
    out = done.stdout
    assert done.returncode == 0, done.stderr
    lines = out.strip().splitlines()
    assert lines[0] == "1000" and lines[1].split() == ["CapEff:", "0000000000000000"], out
    assert "CONNECT tunnel failed, response 407" in out, f"a host outside the tier was not refused:\n{out}"
    assert "pypi 200" in out or "pypi 30" in out, f"an allowlisted host (pypi.org) was not reached:\n{out}"
    assert "no dns" in out, f"the agent resolved an outside name:\n{out}"
    containers = session.engine.run(["ps", "--format", "{{.Names}}"]).out.split()
    proxy = next(c for c in containers if project["project"] in c and "egress-proxy" in c)
    log = session.engine.run(["exec", proxy, "cat", "/var/log/agent-sandbox/egress.jsonl"]).out
    decisions = {(e["host"], e["decision"]) for e in map(json.loads, log.splitlines())}
    assert ("example.com", "denied") in decisions and ("pypi.org", "allowed") in decisions, decisions
