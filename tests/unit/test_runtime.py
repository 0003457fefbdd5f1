"""The runtime's pure parts: the full `run` command is the tier's compiled flags and nothing that weakens them."""

from __future__ import annotations

import os

import pytest
from agent_sandbox import egress, runtime
from agent_sandbox.compilers.runargs import API_KEY_VARS, run_args
from agent_sandbox.errors import InputError
from agent_sandbox.model import NetworkMode
from agent_sandbox.profiles import load_profile, tier_names

IMAGE = "localhost/agent-sandbox-devcontainer:latest"
HOME = {"HOME": "/home/someone"}


def command(tier: str, engine: str = "podman", **kwargs) -> list[str]:
    return runtime.sandbox_command(engine, IMAGE, load_profile(tier), workspace="/src/project", name="box",
                                   host_env=HOME, **kwargs)


@pytest.mark.parametrize("tier", tier_names())
@pytest.mark.parametrize("engine", runtime.ENGINES)
def test_the_run_command_carries_exactly_the_tiers_flags(tier, engine):
    argv = command(tier, engine)
    flags = run_args(load_profile(tier), workspace="/src/project", host_env=HOME)
    assert argv[:4] == [engine, "run", "--detach", "--name=box"]
    assert argv[4 : 4 + len(flags)] == flags
    # after the flags: only the keep-alive entrypoint, the image and the keep-alive's arguments
    assert argv[4 + len(flags) :] == [f"--entrypoint={runtime.KEEPALIVE_ENTRYPOINT}", IMAGE, *runtime.KEEPALIVE_COMMAND]


@pytest.mark.parametrize("tier", tier_names())
def test_nothing_around_the_flags_weakens_the_sandbox(tier):
    around = [a for a in command(tier) if a not in run_args(load_profile(tier), workspace="/src/project", host_env=HOME)]
    weakening = ("--privileged", "--cap-add", "--security-opt", "--network", "--pid", "--ipc", "--userns",
                 "--user", "--volume", "-v", "--mount", "--device", "--memory", "--pids-limit", "--cpus")
    assert not [a for a in around if a.startswith(weakening)]


def test_a_given_command_replaces_the_keepalive_as_entrypoint_and_arguments():
    argv = command("strict", command=["python3", "-c", "print(1)"])
    assert argv[-4:] == ["--entrypoint=python3", IMAGE, "-c", "print(1)"]
    with pytest.raises(InputError):
        command("strict", command=[])


def test_foreground_runs_leave_out_detach():
    assert "--detach" not in command("strict", detach=False)


def test_the_trusted_mounts_resolve_the_callers_home():
    argv = command("trusted")
    assert "--mount=type=bind,source=/home/someone/.ssh,target=/home/vscode/.ssh,readonly" in argv
    assert "--mount=type=bind,source=/home/someone/.gitconfig,target=/home/vscode/.gitconfig,readonly" in argv


def test_the_workspace_is_mounted_with_the_tiers_mode():
    assert "--mount=type=bind,source=/src/project,target=/workspace,readonly" in command("paranoid")
    assert "--mount=type=bind,source=/src/project,target=/workspace" in command("strict")


def test_proxied_tiers_join_the_egress_network():
    assert load_profile("strict").network.mode is NetworkMode.PROXIED
    assert f"--network={egress.EGRESS_NETWORK}" in command("strict")
    assert "--network=none" in command("paranoid")


def test_adjust_rewrites_only_the_tiers_flags_for_weakened_test_containers():
    argv = command("strict", adjust=runtime.without_flags("--cap-drop=", "--security-opt=no-new-privileges"))
    assert not [a for a in argv if a.startswith(("--cap-drop", "--security-opt"))]
    assert "--pids-limit=512" in argv and argv[-3] == IMAGE


def test_replace_flag_swaps_a_value():
    flags = ["--memory=8g", "--memory-swap=8g", "--cpus=2"]
    assert runtime.replace_flag(flags, "--memory=", "--memory=256m") == ["--memory-swap=8g", "--cpus=2", "--memory=256m"]
    assert runtime.replace_flag(flags, "--cpus=", None) == ["--memory=8g", "--memory-swap=8g"]


def test_unknown_engines_are_refused():
    with pytest.raises(InputError):
        command("strict", engine="lxc")
    with pytest.raises(InputError):
        runtime.detect_engine("lxc")


def test_removal_takes_the_scratch_volumes_and_does_not_wait_for_sigterm():
    assert runtime.remove_command("podman", "box") == ["podman", "rm", "--force", "--volumes", "--time=0", "box"]
    assert runtime.remove_command("docker", "box") == ["docker", "rm", "--force", "--volumes", "box"]


def test_forwarded_api_keys_come_from_host_env_only():
    base = {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "real-key", "OPENAI_API_KEY": "real-key-2"}
    env = runtime.engine_env({"OPENAI_API_KEY": "chosen"}, base=base)
    assert env["PATH"] == "/usr/bin"
    assert "ANTHROPIC_API_KEY" not in env and env["OPENAI_API_KEY"] == "chosen"
    assert runtime.engine_env(None, base=base) == base
    assert set(API_KEY_VARS) >= {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}


def test_engine_detection_prefers_podman_then_a_docker_that_answers(monkeypatch):
    answers = {"podman": False, "docker": True}
    monkeypatch.setattr(runtime, "engine_answers", lambda engine, **_: answers[engine])
    assert runtime.detect_engine() == "docker"
    answers["podman"] = True
    assert runtime.detect_engine() == "podman"
    answers.update(podman=False, docker=False)
    with pytest.raises(runtime.EnvironmentProblem):
        runtime.detect_engine()
    with pytest.raises(runtime.EnvironmentProblem):
        runtime.detect_engine("docker")


def test_sandbox_names_are_unique_and_prefixed():
    names = {runtime.new_name("agent-sandbox-x") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("agent-sandbox-x-") for n in names)


@pytest.mark.parametrize(
    ("inspected", "internal"),
    [
        ({"name": "agent-sandbox-egress", "driver": "bridge", "internal": True}, True),  # podman 4
        ({"name": "agent-sandbox-egress", "driver": "bridge", "internal": False}, False),
        ({"Name": "agent-sandbox-egress", "Driver": "bridge", "Internal": True}, True),  # docker, podman's docker API
        ({"Name": "agent-sandbox-egress", "Driver": "bridge", "Internal": False}, False),
        ({"Name": "agent-sandbox-egress", "Driver": "bridge"}, False),  # not reported: not internal
    ],
)
def test_internal_networks_are_told_from_inspect(inspected, internal):
    assert runtime.is_internal(inspected) is internal


@pytest.mark.parametrize(
    ("internal", "outcome"),
    [
        (True, None),  # an existing internal network is used as it is
        (False, ("network agent-sandbox-egress exists but is not internal: "
                 "remove it (podman network rm agent-sandbox-egress)")),
    ],
)
def test_an_existing_egress_network_must_be_internal(monkeypatch, internal, outcome):
    monkeypatch.setattr(runtime, "network_exists", lambda engine, name: True)
    monkeypatch.setattr(runtime, "inspect", lambda engine, name, kind: {"name": name, "internal": internal})
    monkeypatch.setattr(runtime, "run_engine", lambda *a, **k: pytest.fail(f"nothing is created: {a}"))
    if outcome is None:
        assert runtime.ensure_egress_network("podman") is False
    else:
        with pytest.raises(runtime.EnvironmentProblem) as raised:
            runtime.ensure_egress_network("podman")
        assert str(raised.value) == outcome


def test_the_engine_runs_in_a_private_directory_not_the_callers():
    """podman's conmon leaves an empty `oom` file in its working directory when a container is OOM-killed."""
    cwd = runtime.engine_cwd()
    # One private directory per process (it may already hold conmon's `oom` from an earlier test).
    assert runtime.engine_cwd() == cwd and os.path.isdir(cwd)
    assert os.path.basename(cwd).startswith("agent-sandbox-engine-")
    assert os.path.realpath(cwd) != os.path.realpath(os.getcwd())
