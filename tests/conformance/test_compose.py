"""`agent-sandbox compose` for real: a coordinator and two agents of a real repository as one Compose project, on
the engine under test with its Compose tool (podman-compose; docker compose or docker-compose v1), and the
generated file accepted by both tools' `config`.

The agents' work is a STAND-IN (no API key here): shell tasks doing what an agent does in its worktree, each also
checking from inside that its tier's egress policy is the one it got (strict: no name resolves, the proxy refuses a
host the tier does not list; standard: names resolve, no proxy). The coordinator merges both branches into its own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import runtime

from .conftest import Session
from .test_spawn import OWNER, chown_all, hostgit, make_project

VENV_BIN = str(Path(sys.executable).parent)  # podman-compose is in the test extra

DESCRIPTION = """\
# a coordinator and two agents (their tasks are stand-ins for an agent's work)
name: {project}
repo: repo
from: main
agents:
  locked:
    agent: shell
    tier: strict
    task: |
      set -e
      if getent hosts pypi.org; then exit 1; fi                  # no name resolves (the proxy resolves)
      refused=$(curl -s -o /dev/null -w '%{{http_connect}}' --max-time 20 https://example.com/ || true)
      [ "$refused" = 407 ]                                       # the proxy refuses a host strict does not list
      echo "tier=$AGENT_SANDBOX_TIER" > locked.txt
      git add locked.txt && git commit -q -m "locked: its file"
  open:
    agent: shell
    tier: standard
    task: |
      set -e
      getent hosts pypi.org                                      # names resolve: the open network
      echo "tier=$AGENT_SANDBOX_TIER" > open.txt
      git add open.txt && git commit -q -m "open: its file"
coordinator:
  agent: shell
  task: git merge --no-edit agent/{project}-locked agent/{project}-open
"""


def cli(session: Session, state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **session.host_env(),
        "AGENT_SANDBOX_STATE": str(state),
        "SUDO_UID": str(OWNER),
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    return subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


@pytest.fixture
def described(session: Session) -> Iterator[dict[str, Any]]:
    project = f"as-compose-{secrets.token_hex(3)}"
    made = make_project(session.base / project)
    description = made.base / "agents.yaml"
    description.write_text(DESCRIPTION.format(project=project))
    chown_all(made.base)
    state = session.base / "compose-state"
    members = [f"{project}-{name}" for name in ("locked", "open", "coordinator")]
    try:
        yield {"project": project, "made": made, "file": description, "state": state, "members": members}
    finally:
        cli(session, state, "compose", "down", "--force", str(description), "--engine", session.engine.name)
        for name in members:
            runtime.remove_leftovers(session.engine, name)
        session.engine.remove_network(f"{project}-outbound")


def test_the_generated_file_validates_with_both_compose_tools(session, described):
    done = cli(session, described["state"], "compose", str(described["file"]), "--engine", session.engine.name)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.is_file()
    for tool in (["docker-compose"], [f"{VENV_BIN}/podman-compose"]):
        checked = subprocess.run(
            [*tool, "-p", described["project"], "-f", str(path), "config"], text=True, capture_output=True, timeout=120
        )
        assert checked.returncode == 0, f"{tool[0]}: {checked.stderr[-2000:]}"
    again = cli(session, described["state"], "compose", str(described["file"]), "--engine", session.engine.name)
    assert again.returncode == 0 and again.stdout == done.stdout, again.stderr  # written again, worktrees kept


def test_a_coordinator_and_two_agents_run_and_merge(session, described):
    project, made, state = described["project"], described["made"], described["state"]
    up = cli(session, state, "compose", "up", str(described["file"]), "--engine", session.engine.name)
    assert up.returncode == 0, up.stdout + up.stderr
    coordinator = f"{project}-coordinator"
    code = session.engine.run(["wait", coordinator], timeout=300).out.strip().splitlines()[-1]
    logs = {m: session.engine.run(["logs", m], check=False) for m in described["members"]}
    assert code == "0", {m: (r.out + r.err)[-800:] for m, r in logs.items()}
    ps = cli(session, state, "compose", "ps", "--json", str(described["file"]))
    rows = {row["id"]: row for row in json.loads(ps.stdout)}
    assert {m: rows[m]["state"] for m in described["members"]} == dict.fromkeys(described["members"], "exited (0)")
    assert rows[coordinator]["ahead"] == 3 and rows[f"{project}-locked"]["ahead"] == 1, rows
    # the coordinator's branch holds both agents' work, each written with its own tier
    repo = made.repo
    merged = {name: hostgit(repo, "show", f"agent/{coordinator}:{name}.txt") for name in ("locked", "open")}
    assert merged == {"locked": "tier=strict", "open": "tier=standard"}
    # per agent: its own network (internal for strict, with its own proxy; routed for standard, without one)
    networks = {n: session.engine.inspect(n, kind="network") for n in (f"{project}-locked-net", f"{project}-open-net")}
    assert [bool(i.get("internal", i.get("Internal"))) for i in networks.values()] == [True, False]
    assert session.engine.container_exists(f"{project}-locked-proxy")
    assert not session.engine.container_exists(f"{project}-open-proxy")
    log = state / "sandboxes" / f"{project}-locked" / "proxy" / "egress.jsonl"
    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(d["host"] == "example.com" and d["decision"] == "denied" for d in decisions), decisions
    # down: containers and networks go; the agents' worktrees too (their commits are on the coordinator's
    # branch), the coordinator's stays (its merge is on no other branch)
    down = cli(session, state, "compose", "down", str(described["file"]), "--engine", session.engine.name)
    assert down.returncode == 0, down.stderr
    assert f"kept {coordinator}: 3 commits on agent/{coordinator}" in down.stdout, down.stdout
    for member in described["members"]:
        left = runtime.leftovers(session.engine, member)
        assert not any(left.values()), left
    assert not (made.worktrees / f"{project}-locked").exists() and (made.worktrees / coordinator).is_dir()
    assert hostgit(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/agent").split() == [
        f"agent/{coordinator}"
    ]


def test_bad_descriptions_are_one_line_and_make_nothing(session, tmp_path):
    made = make_project(tmp_path / "p")
    bad = made.base / "agents.yaml"
    bad.write_text("name: x\nrepo: repo\nagents:\n  one:\n    agent: shell\n    tier: lax\n    task: 'true'\n")
    chown_all(made.base)
    done = cli(session, tmp_path / "state", "compose", str(bad), "--engine", session.engine.name)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "lax" in done.stderr, done.stderr
    assert f"{bad}:4: agents.one" in done.stderr, done.stderr  # file, line and key
    assert hostgit(made.repo, "for-each-ref", "refs/heads/agent") == ""
    assert not made.worktrees.exists()
