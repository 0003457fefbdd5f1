"""The sandbox plan (pure) and the engine layer: what `run` starts is the tier's flags and nothing that weakens them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import egress, engine, runtime, sandbox
from agent_sandbox.compilers.runargs import api_key_vars, run_args
from agent_sandbox.compilers.seccomp import needs_seccomp, seccomp_json
from agent_sandbox.errors import EnvironmentProblem, InputError
from agent_sandbox.model import NetworkMode
from agent_sandbox.profiles import load_profile, tier_names

IMAGE = "localhost/agent-sandbox-devcontainer:latest"
HOME = {"HOME": "/home/someone"}


def plan(tier: str, engine_name: str = "podman", **kwargs: Any) -> sandbox.Plan:
    return sandbox.Plan(
        sandbox.Request(
            IMAGE,
            load_profile(tier),
            Path("/src/project"),
            "box",
            engine_name,
            Path("/state/box"),
            host_env=HOME,
            **kwargs,
        )
    )


def command(tier: str, engine_name: str = "podman", **kwargs: Any) -> list[str]:
    return sandbox.sandbox_command(
        engine_name, IMAGE, load_profile(tier), workspace="/src/project", name="box", host_env=HOME, **kwargs
    )


def seccomp_of(tier: str) -> str | None:
    """Where the runtime puts a tier's seccomp profile: its state directory (sandbox_command's is /nonexistent)."""
    return "/nonexistent/seccomp.json" if needs_seccomp(load_profile(tier)) else None


@pytest.mark.parametrize("tier", tier_names())
@pytest.mark.parametrize("engine_name", engine.ENGINES)
def test_the_run_command_carries_exactly_the_tiers_flags(tier, engine_name):
    argv = command(tier, engine_name)
    network = "box-net" if load_profile(tier).network.mode is NetworkMode.PROXIED else None
    flags = run_args(
        load_profile(tier), workspace="/src/project", host_env=HOME, network=network, seccomp=seccomp_of(tier)
    )
    head = [
        engine_name,
        "run",
        "--detach",
        "--name=box",
        f"--label={sandbox.SANDBOX_LABEL}=box",
        f"--label={sandbox.ROLE_LABEL}=agent",
    ]
    assert argv[: len(head)] == head
    assert argv[len(head) : len(head) + len(flags)] == flags
    rest = argv[len(head) + len(flags) :]
    if network:  # the proxy by its fixed name: the only host entry, and the agent has no DNS
        assert rest[0] == f"--add-host={egress.PROXY_HOST}:10.0.0.2"
        rest = rest[1:]
    assert rest == [f"--entrypoint={sandbox.KEEPALIVE_ENTRYPOINT}", IMAGE, *sandbox.KEEPALIVE_COMMAND]


@pytest.mark.parametrize("tier", tier_names())
def test_nothing_around_the_flags_weakens_the_sandbox(tier):
    network = "box-net" if load_profile(tier).network.mode is NetworkMode.PROXIED else None
    flags = run_args(
        load_profile(tier), workspace="/src/project", host_env=HOME, network=network, seccomp=seccomp_of(tier)
    )
    around = [a for a in command(tier) if a not in flags]
    weakening = (
        "--privileged",
        "--cap-add",
        "--security-opt",
        "--network",
        "--pid",
        "--ipc",
        "--userns",
        "--user",
        "--volume",
        "-v",
        "--mount",
        "--device",
        "--memory",
        "--pids-limit",
        "--cpus",
        "--dns",
        "--sysctl",
    )
    assert not [a for a in around if a.startswith(weakening)]


@pytest.mark.parametrize("tier", tier_names())
def test_the_seccomp_flag_names_the_copy_in_the_state_directory(tier):
    box = plan(tier)
    argv = box.agent_run("10.0.0.2")
    seccomp = [a for a in argv if a.startswith("--security-opt=seccomp=")]
    if needs_seccomp(load_profile(tier)):
        assert seccomp == ["--security-opt=seccomp=/state/box/seccomp.json"]
        assert box.seccomp_file == Path("/state/box/seccomp.json")
        assert box.seccomp_text == seccomp_json(load_profile(tier))
    else:
        assert seccomp == [] and box.seccomp_text is None


def test_missing_tier_mount_sources_are_left_out_with_a_warning():
    """The pure decision: which tier mounts the runtime leaves out, given what exists on the host."""
    trusted = load_profile("trusted")
    present = {"/home/someone/.gitconfig"}
    skip, warnings = runtime.skipped_mount_warnings(trusted, HOME, exists=present.__contains__)
    assert skip == ("/home/vscode/.ssh",)
    assert warnings == [
        "profile trusted: /home/someone/.ssh does not exist on this host: not mounting it at /home/vscode/.ssh"
    ]
    argv = plan("trusted", skip_mounts=skip).agent_run()
    mounts = [a for a in argv if a.startswith("--mount=type=bind,source=/home/someone")]
    assert mounts == ["--mount=type=bind,source=/home/someone/.gitconfig,target=/home/vscode/.gitconfig,readonly"]
    # both present: both mounted, no warning; HOME unset: nothing to resolve the source with, so it is missing
    assert runtime.skipped_mount_warnings(trusted, HOME, exists=lambda _: True) == ((), [])
    assert runtime.skipped_mount_warnings(trusted, {}, exists=lambda _: True)[0] == (
        "/home/vscode/.gitconfig",
        "/home/vscode/.ssh",
    )
    assert runtime.skipped_mount_warnings(load_profile("strict"), HOME, exists=lambda _: False) == ((), [])


def test_a_given_command_replaces_the_keepalive_as_entrypoint_and_arguments():
    argv = command("strict", command=["python3", "-c", "print(1)"])
    assert argv[-4:] == ["--entrypoint=python3", IMAGE, "-c", "print(1)"]
    with pytest.raises(InputError):
        command("strict", command=[])


def test_the_trusted_mounts_resolve_the_callers_home():
    argv = command("trusted")
    assert "--mount=type=bind,source=/home/someone/.ssh,target=/home/vscode/.ssh,readonly" in argv
    assert "--mount=type=bind,source=/home/someone/.gitconfig,target=/home/vscode/.gitconfig,readonly" in argv


def test_the_workspace_is_mounted_with_the_tiers_mode():
    assert "--mount=type=bind,source=/src/project,target=/workspace,readonly" in command("paranoid")
    assert "--mount=type=bind,source=/src/project,target=/workspace" in command("strict")


def test_a_proxied_tier_gets_its_own_network_no_dns_and_no_ipv6():
    argv = command("strict")
    assert "--network=box-net" in argv and f"--network={egress.EGRESS_NETWORK}" not in argv
    assert f"--dns={egress.NO_RESOLVER}" in argv
    assert "--sysctl=net.ipv6.conf.all.disable_ipv6=1" in argv
    assert "--network=none" in command("paranoid")
    assert not [a for a in command("standard") if a.startswith(("--network", "--dns", "--add-host"))]


# ---------------------------------------------------------------- the plan of a proxied sandbox
@pytest.mark.parametrize("engine_name", engine.ENGINES)
def test_a_proxied_sandbox_is_an_internal_network_a_proxy_and_the_agent(engine_name):
    p = plan("strict", engine_name)
    assert (p.container, p.network, p.proxy) == ("box", "box-net", "box-proxy")
    create = p.network_create()
    assert create[:3] == ["network", "create", "--internal"] and create[-1] == "box-net"
    # podman's aardvark-dns forwards outside names even on internal networks: switched off
    assert ("--disable-dns" in create) == (engine_name == "podman")
    proxy = p.proxy_run()
    assert proxy[:3] == ["run", "--detach", "--name=box-proxy"]
    assert f"--network={egress.OUTBOUND_NETWORK}" in proxy and proxy[-1].endswith("agent-sandbox-proxy:latest")
    assert "--cap-drop=ALL" in proxy and "--read-only" in proxy and "--security-opt=no-new-privileges" in proxy
    assert f"--mount=type=bind,source=/state/box/squid.conf,target={egress.PROXY_CONFIG},readonly" in proxy
    assert p.proxy_connect() == ["network", "connect", "box-net", "box-proxy"]
    with pytest.raises(ValueError):
        p.agent_run(None)  # a proxied agent without its proxy's address


@pytest.mark.parametrize("tier", ["paranoid", "standard", "trusted"])
def test_other_tiers_have_no_network_and_no_proxy(tier):
    p = plan(tier)
    assert p.network is None and p.proxy is None
    assert p.removal(lambda name: ["rm", name]) == [["rm", "box"]]


def test_removal_takes_containers_before_their_network():
    steps = plan("strict").removal(lambda name: ["rm", name])
    assert steps == [["rm", "box"], ["rm", "box-proxy"], ["network", "rm", "box-net"]]


def test_a_ca_bundle_replaces_the_images_and_every_runtime_is_told():
    argv = plan("standard", ca_bundle=Path("/etc/corp-ca.pem")).agent_run()
    assert f"--mount=type=bind,source=/etc/corp-ca.pem,target={sandbox.SYSTEM_CA},readonly" in argv
    for var in ("NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert f"--env={var}={sandbox.SYSTEM_CA}" in argv


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 57, "ü"])
def test_bad_sandbox_names_are_refused(name):
    with pytest.raises(InputError):
        sandbox.check_name(name)


def test_unknown_engines_are_refused():
    with pytest.raises(InputError):
        command("strict", engine_name="lxc")
    with pytest.raises(InputError):
        engine.engine_named("lxc")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AGENT_SANDBOX_STATE": "/x"}, "/x"),
        ({"XDG_STATE_HOME": "/s", "HOME": "/h"}, "/s/agent-sandbox"),
        ({"HOME": "/h"}, "/h/.local/state/agent-sandbox"),
    ],
)
def test_the_state_directory_follows_the_xdg_rules(env, expected):
    assert sandbox.state_root(env) == Path(expected)
    assert sandbox.sandbox_state_dir("box", env) == Path(expected) / "sandboxes" / "box"


# ---------------------------------------------------------------- the engine layer
def test_removal_takes_the_scratch_volumes_and_does_not_wait_for_sigterm():
    assert engine.Engine("podman", "podman").remove_container_argv("box") == [
        "rm",
        "--force",
        "--volumes",
        "--time=0",
        "box",
    ]
    assert engine.Engine("docker", "docker").remove_container_argv("box") == ["rm", "--force", "--volumes", "box"]


def test_forwarded_api_keys_come_from_host_env_only():
    base = {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "real-key", "OPENAI_API_KEY": "real-key-2"}
    env = runtime.engine_env({"OPENAI_API_KEY": "chosen"}, base=base)
    assert env["PATH"] == "/usr/bin"
    assert "ANTHROPIC_API_KEY" not in env and env["OPENAI_API_KEY"] == "chosen"
    assert runtime.engine_env({}, base=base) == {"PATH": "/usr/bin"}
    assert set(api_key_vars()) >= {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"}


def test_engine_detection_prefers_podman_then_a_docker_that_answers(monkeypatch):
    answers = {"podman": False, "docker": True}
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(engine.Engine, "answers", lambda self, **_: answers[self.name])
    monkeypatch.delenv("AGENT_SANDBOX_ENGINE", raising=False)
    assert engine.detect_engine().name == "docker"
    answers["podman"] = True
    assert engine.detect_engine().name == "podman"
    answers.update(podman=False, docker=False)
    with pytest.raises(EnvironmentProblem):
        engine.detect_engine()
    with pytest.raises(EnvironmentProblem):
        engine.detect_engine("docker")


def test_sandbox_names_are_unique_and_prefixed():
    names = {sandbox.new_name("agent-sandbox-x") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("agent-sandbox-x-") for n in names)


@pytest.mark.parametrize(
    ("inspected", "internal"),
    [
        ({"name": "n", "driver": "bridge", "internal": True}, True),  # podman 4
        ({"name": "n", "driver": "bridge", "internal": False}, False),
        ({"Name": "n", "Driver": "bridge", "Internal": True}, True),  # docker, podman's docker API
        ({"Name": "n", "Driver": "bridge", "Internal": False}, False),
        ({"Name": "n", "Driver": "bridge"}, False),  # not reported: not internal
    ],
)
def test_internal_networks_are_told_from_inspect(inspected, internal):
    assert engine.is_internal(inspected) is internal


@pytest.mark.parametrize(
    ("inspected", "refused"),
    [('[{"name": "n", "internal": true}]', True), ('[{"Name": "n", "Internal": false}]', False)],
)
def test_an_internal_outbound_network_is_refused(monkeypatch, inspected, refused):
    from agent_sandbox.process import Result

    podman = engine.Engine("podman", "podman")
    calls: list[list[str]] = []

    def run(self, args, **_):
        calls.append(list(args))
        return Result(0, inspected, "")

    monkeypatch.setattr(engine.Engine, "run", run)
    if refused:
        with pytest.raises(EnvironmentProblem, match="internal"):
            runtime.ensure_outbound_network(podman, egress.OUTBOUND_NETWORK)
    else:
        runtime.ensure_outbound_network(podman, egress.OUTBOUND_NETWORK)
    assert calls == [["network", "inspect", egress.OUTBOUND_NETWORK]]  # an existing network is never re-created


def test_replace_flag_swaps_a_value():
    flags = ["--memory=8g", "--memory-swap=8g", "--cpus=2"]
    assert runtime.replace_flag(flags, "--memory=", "--memory=256m") == [
        "--memory-swap=8g",
        "--cpus=2",
        "--memory=256m",
    ]
    assert runtime.replace_flag(flags, "--cpus=", None) == ["--memory=8g", "--memory-swap=8g"]


def test_the_engine_runs_in_a_private_directory_not_the_callers():
    """podman's conmon leaves an empty `oom` file in its working directory when a container is OOM-killed."""
    cwd = engine.engine_cwd()
    assert engine.engine_cwd() == cwd and os.path.isdir(cwd)
    assert os.path.basename(cwd).startswith("agent-sandbox-engine-")
    assert os.path.realpath(cwd) != os.path.realpath(os.getcwd())
