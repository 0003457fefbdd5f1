"""Container run flags and devcontainer.json: what each tier compiles to."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from agent_sandbox import egress, profiles
from agent_sandbox.compilers.devcontainer import devcontainer_json, metadata_label
from agent_sandbox.compilers.runargs import api_key_vars, missing_mounts, run_args

TIERS = ["paranoid", "strict", "standard", "trusted"]

# flag -> tiers that must carry it (all other tiers must not)
FLAGS = {
    "--cap-drop=ALL": {"paranoid", "strict", "standard"},
    "--security-opt=no-new-privileges": {"paranoid", "strict", "standard"},
    "--read-only": {"paranoid"},
    "--network=none": {"paranoid"},
    f"--network={egress.EGRESS_NETWORK}": {"strict"},
    "--pids-limit=512": {"strict", "standard"},
    "--pids-limit=256": {"paranoid"},
    "--memory=8g": {"strict", "standard"},
    "--memory=4g": {"paranoid"},
    "--user=1000:1000": set(TIERS),
    "--tmpfs=/tmp:rw,nosuid,nodev,mode=1777": set(TIERS),
    f"--env=HTTPS_PROXY={egress.PROXY_URL}": {"strict"},
    "--env=ANTHROPIC_API_KEY": {"strict", "standard", "trusted"},
}


@pytest.mark.parametrize("flag, tiers", FLAGS.items(), ids=list(FLAGS))
def test_flag_is_present_exactly_in_its_tiers(flag, tiers):
    for tier in TIERS:
        assert (flag in run_args(profiles.load_profile(tier))) == (tier in tiers), tier


@pytest.mark.parametrize("tier", TIERS)
def test_api_keys_pass_by_name_never_by_value(tier):
    env = {name: "sk-secret-value" for name in api_key_vars()}
    args = run_args(profiles.load_profile(tier), host_env=env)
    assert not any("sk-secret-value" in arg for arg in args)
    config = json.dumps(devcontainer_json(profiles.load_profile(tier), "img"))
    assert "sk-secret-value" not in config


@pytest.mark.parametrize("tier, suffix", [("paranoid", ",readonly"), ("strict", ""), ("trusted", "")])
def test_workspace_mount_mode_follows_the_filesystem_rules(tier, suffix):
    args = run_args(profiles.load_profile(tier), workspace="/src/repo")
    assert f"--mount=type=bind,source=/src/repo,target=/workspace{suffix}" in args


def test_paranoid_home_is_a_throwaway_volume():
    args = run_args(profiles.load_profile("paranoid"))
    assert "--mount=type=volume,target=/home/vscode" in args
    assert not any(arg.startswith("--tmpfs=/home") for arg in args)


def test_trusted_mounts_expand_local_env():
    args = run_args(profiles.load_profile("trusted"), host_env={"HOME": "/home/me"})
    assert "--mount=type=bind,source=/home/me/.ssh,target=/home/vscode/.ssh,readonly" in args


def test_skipped_mounts_are_left_out_and_nothing_else():
    trusted = profiles.load_profile("trusted")
    full = run_args(trusted, host_env={"HOME": "/home/me"})
    args = run_args(trusted, host_env={"HOME": "/home/me"}, skip_mounts={"/home/vscode/.ssh"})
    assert [a for a in full if a not in args] == [
        "--mount=type=bind,source=/home/me/.ssh,target=/home/vscode/.ssh,readonly"
    ]


def test_missing_mounts_is_the_pure_decision():
    trusted = profiles.load_profile("trusted")
    exists = {"/home/me/.ssh"}.__contains__
    assert [(m.target, src) for m, src in missing_mounts(trusted, {"HOME": "/home/me"}, exists)] == [
        ("/home/vscode/.gitconfig", "/home/me/.gitconfig")
    ]
    assert missing_mounts(profiles.load_profile("standard"), {}, lambda _: False) == ()


def test_only_paranoid_replaces_the_engines_seccomp_profile():
    for tier in TIERS:
        flags = [f for f in run_args(profiles.load_profile(tier)) if f.startswith("--security-opt=seccomp=")]
        assert len(flags) == (1 if tier == "paranoid" else 0), tier


@pytest.mark.parametrize("tier", TIERS)
def test_devcontainer_json_says_how_missing_mounts_and_the_seccomp_file_behave(tier):
    profile = profiles.load_profile(tier)
    notes = devcontainer_json(profile, "img").get("customizations", {}).get("agent-sandbox", {})
    assert ("refuses to start the container when one is missing" in notes.get("missingMountSources", "")) == bool(
        profile.container.mounts
    )
    assert ("--target seccomp" in notes.get("seccompProfile", "")) == (tier == "paranoid")


@pytest.mark.parametrize("tier", TIERS)
def test_metadata_label_carries_the_same_run_flags(tier):
    profile = profiles.load_profile(tier)
    (entry,) = metadata_label(profile)
    flags = entry["customizations"]["agent-sandbox"]["runArgs"]
    assert flags == devcontainer_json(profile, "img")["runArgs"]
    assert set(flags) <= set(run_args(profile))
    assert entry["remoteUser"] == "vscode"
    assert ("securityOpt" in entry) == profile.container.no_new_privileges


@pytest.mark.skipif(
    shutil.which("devcontainer") is None, reason="Dev Containers CLI (npm @devcontainers/cli) not installed"
)
@pytest.mark.parametrize("tier", TIERS)
def test_devcontainer_cli_accepts_the_config(tier, tmp_path: Path):
    """The reference implementation of the Dev Containers spec reads our file and resolves ${localEnv:...}."""
    (tmp_path / ".devcontainer").mkdir()
    profile = profiles.load_profile(tier)
    (tmp_path / ".devcontainer" / "devcontainer.json").write_text(
        json.dumps(devcontainer_json(profile, "localhost/x:latest"))
    )
    out = subprocess.run(
        [
            "devcontainer",
            "read-configuration",
            "--docker-path",
            shutil.which("podman") or "docker",
            "--workspace-folder",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/home/tester", "ANTHROPIC_API_KEY": "k"},
    )
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)["configuration"]
    assert config["image"] == "localhost/x:latest"
    assert config["remoteUser"] == "vscode"
    assert config["workspaceMount"].endswith(",readonly") == (profile.workspace_mode == "ro")
    if tier != "paranoid":
        assert config["containerEnv"]["ANTHROPIC_API_KEY"] == "k"
    if tier == "trusted":
        assert "source=/home/tester/.ssh,target=/home/vscode/.ssh,type=bind,readonly" in config["mounts"]
    seccomp = [f for f in config["runArgs"] if f.startswith("--security-opt=seccomp=")]
    if tier == "paranoid":  # the CLI resolves the file's place under the user's home
        assert seccomp[0].startswith("--security-opt=seccomp=/home/tester/.local/share/agent-sandbox/seccomp/")
    else:
        assert not seccomp


# ---------------------------------------------------------------- the Compose-based devcontainer of proxied tiers
@pytest.mark.parametrize("tier", TIERS)
def test_every_run_flag_of_every_tier_has_a_compose_translation(tier):
    from agent_sandbox.compilers.devcontainer import compose_service
    from agent_sandbox.compilers.runargs import run_spec

    service = compose_service(run_spec(profiles.load_profile(tier)).flags)
    box = profiles.load_profile(tier).container
    assert service["user"] == "1000:1000"
    assert service.get("cap_drop", []) == list(box.cap_drop)
    assert ("no-new-privileges" in service.get("security_opt", [])) == box.no_new_privileges
    assert service.get("pids_limit") == box.pids
    assert service.get("read_only", False) == profiles.load_profile(tier).filesystem.readonly


def test_a_flag_without_translation_is_refused():
    from agent_sandbox.compilers.devcontainer import compose_service

    with pytest.raises(ValueError, match="--privileged"):
        compose_service(["--cap-drop=ALL", "--privileged"])


def test_the_strict_devcontainer_is_the_agent_its_network_and_its_proxy(tmp_path: Path):
    from agent_sandbox.compilers.devcontainer import devcontainer_files

    files = devcontainer_files(profiles.load_profile("strict"), "img", proxy_image="proxy", subnet="10.221.7.0/24")
    assert set(files) == {"devcontainer.json", "compose.yaml", "squid.conf"}
    config = json.loads(files["devcontainer.json"])
    assert config["dockerComposeFile"] == ["compose.yaml"] and config["runServices"] == ["agent", "egress-proxy"]
    from ruamel.yaml import YAML

    compose = YAML(typ="safe").load(files["compose.yaml"])
    agent, proxy = compose["services"]["agent"], compose["services"]["egress-proxy"]
    assert agent["networks"] == ["sandbox"] and compose["networks"]["sandbox"]["internal"] is True
    assert agent["extra_hosts"] == [f"{egress.PROXY_HOST}:10.221.7.2"] and agent["dns"] == ["127.0.0.1"]
    assert proxy["networks"]["sandbox"]["ipv4_address"] == "10.221.7.2" and "outbound" in proxy["networks"]
    assert "acl from_sandbox src 10.221.7.0/24" in files["squid.conf"]
    assert not any("sk-" in text for text in files.values())
    with pytest.raises(ValueError):
        devcontainer_files(profiles.load_profile("standard"), "img", proxy_image="proxy", subnet="10.221.7.0/24")
