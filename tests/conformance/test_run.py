"""`agent-sandbox run` for real: the agent's exit status and output, and nothing left behind — after a normal exit,
on SIGTERM and Ctrl-C, when the start fails half-way, and after bad input (one line, exit 2, or 3 for the
environment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import profiles, runtime
from agent_sandbox.conformance.session import Session
from agent_sandbox.errors import SandboxError
from agent_sandbox.sandbox import new_name


def cli(session: Session, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    environment = {**session.host_env(), **(env or {}), "AGENT_SANDBOX_STATE": str(session.base / "run-state")}
    return subprocess.Popen(
        [sys.executable, "-m", "agent_sandbox.cli", *args],
        env=environment,
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def run_cli(
    session: Session, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    proc = cli(session, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def base_args(session: Session, tier: str, name: str, workspace: Path) -> list[str]:
    return [
        "run",
        "--tier",
        tier,
        "--name",
        name,
        "--engine",
        session.engine.name,
        "--image",
        session.image,
        "--workspace",
        str(workspace),
    ]


def nothing_left(session: Session, name: str) -> None:
    left = runtime.leftovers(session.engine, name)
    assert not any(left.values()), f"{name} left behind: {left}"


@pytest.mark.parametrize("run_tier", ["strict", "paranoid", "standard"])
def test_the_agents_exit_status_and_output_and_nothing_left(session, run_tier):
    tier = run_tier
    name = new_name("as-run")
    done = run_cli(
        session,
        *base_args(session, tier, name, session.new_workspace("run")),
        "shell",
        "--",
        "-c",
        "echo hello from $AGENT_SANDBOX_TIER; exit 7",
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip() == f"hello from {tier}"
    assert f"shell in a {tier} sandbox ({name}" in done.stderr  # the banner, on stderr
    nothing_left(session, name)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_everything(session, how):
    name = new_name("as-run-sig")
    proc = cli(
        session,
        *base_args(session, "strict", name, session.new_workspace("sig")),
        "shell",
        "--",
        "-c",
        "sleep 120",
        # as from a terminal: a test run started in the background (`make test &`) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not session.engine.running(name):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.2)
    while "sleep 120" not in session.engine.run(["top", name], check=False).out:  # the agent's exec is attached
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the agent did not start"
        time.sleep(0.2)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (143 if how == signal.SIGTERM else 130), err
    nothing_left(session, name)


def test_keep_leaves_the_sandbox_and_rm_removes_it(session):
    name = new_name("as-run-keep")
    done = run_cli(
        session,
        *base_args(session, "strict", name, session.new_workspace("keep")),
        "--keep",
        "shell",
        "--",
        "-c",
        "true",
    )
    assert done.returncode == 0, done.stderr
    assert session.engine.container_exists(name) and session.engine.container_exists(f"{name}-proxy")
    removed = run_cli(session, "rm", name, "--engine", session.engine.name)
    assert removed.returncode == 0, removed.stderr
    nothing_left(session, name)
    again = run_cli(session, "rm", name, "--engine", session.engine.name)
    assert again.returncode == 2 and again.stderr.count("\n") == 1


def test_a_start_that_fails_half_way_is_rolled_back(session):
    """The proxy is created, then fails (a broken squid.conf): network and containers go again, and the user
    gets one line saying why."""
    name = new_name("as-run-half")
    with pytest.raises(SandboxError, match="egress proxy"):
        runtime.start_sandbox(
            session.image,
            profiles.load_profile("strict"),
            engine=session.engine,
            workspace=session.new_workspace("half"),
            name=name,
            host_env=session.host_env(),
            state_dir=session.base / "state-half",
            ready_timeout=15,
            proxy_conf_adjust=lambda text: text + "no_such_directive_of_squid on\n",
        )
    nothing_left(session, name)


BAD_INPUT = {
    # what, extra arguments, agent, expected exit status, words of the one line
    "unknown agent": ([], "nobody", 2, "unknown agent"),
    "agent not in the image": ([], "cursor", 2, "not in image"),
    "workspace missing": (["--workspace", "/nonexistent/dir"], "shell", 2, "no such directory"),
    "unknown tier": (["--tier", "lax"], "shell", 2, "lax"),
    "bad name": (["--name", "-bad"], "shell", 2, "sandbox name"),
    "API key on the command line": (["-e", "ANTHROPIC_API_KEY=sk-x"], "shell", 2, "forwarded by name"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_starts_nothing(session, case):
    extra, agent, code, words = BAD_INPUT[case]
    name = new_name("as-run-bad")
    args = base_args(session, "strict", name, session.new_workspace("bad"))
    # later options win in click: the case's own values replace the defaults
    done = run_cli(session, *args, *extra, agent)
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    nothing_left(session, name)


def test_a_name_in_use_is_refused_and_the_other_sandbox_untouched(session):
    name = new_name("as-run-twice")
    first = cli(
        session, *base_args(session, "strict", name, session.new_workspace("twice")), "shell", "--", "-c", "sleep 60"
    )
    try:
        deadline = time.monotonic() + 60
        while not session.engine.running(name):
            assert time.monotonic() < deadline and first.poll() is None, "the first sandbox did not start"
            time.sleep(0.2)
        second = run_cli(session, *base_args(session, "strict", name, session.new_workspace("twice2")), "shell")
        assert second.returncode == 2 and "exists already" in second.stderr, second.stderr
        assert session.engine.running(name) and session.engine.running(f"{name}-proxy")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    nothing_left(session, name)


def test_an_engine_that_does_not_answer_is_exit_3(session):
    done = run_cli(
        session,
        "run",
        "--engine",
        "docker",
        "--workspace",
        str(session.new_workspace("noengine")),
        "shell",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("run_tier", ["strict", "standard"])
def test_keys_inside_reach_the_agent_by_name_only(session, run_tier):
    """With --keys-inside (strict: else the key gateway holds it) or in an open tier, the key the user set is in
    the agent's process, not in the container's configuration (inspect), not on any command line."""
    name = new_name("as-run-key")
    secret = "sk-conformance-" + os.urandom(6).hex()
    script = (
        'echo key=$ANTHROPIC_API_KEY; tr "\\0" "\\n" < /proc/1/environ | grep -c -F -e "x${ANTHROPIC_API_KEY}" '
        '-e "=${ANTHROPIC_API_KEY}" || true'
    )
    extra = ["--keys-inside"] if run_tier == "strict" else []
    proc = cli(
        session,
        *base_args(session, run_tier, name, session.new_workspace("key")),
        "--keep",
        *extra,
        "shell",
        "--",
        "-c",
        script,
        env={"ANTHROPIC_API_KEY": secret},
    )
    out, err = proc.communicate(timeout=120)
    try:
        assert proc.returncode == 0, err
        assert f"key={secret}" in out and out.strip().endswith("0"), out  # the exec'd agent has it; PID 1 does not
        assert secret not in str(session.engine.inspect(name)), "the key is in the container's configuration"
        assert secret not in " ".join(proc.args)
    finally:
        runtime.remove_leftovers(session.engine, name)
