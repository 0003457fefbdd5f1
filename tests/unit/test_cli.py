"""The command line: every target compiles, bad input is one line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TIERS = ["paranoid", "strict", "standard", "trusted"]


@pytest.fixture(autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own: compiling paranoid writes its seccomp profile under it."""
    path = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(path))
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("target", ["leash", "run-args", "devcontainer", "squid"])
def test_every_tier_compiles_to_every_target(tier, target, tmp_path):
    proxied = tier == "strict"
    if target == "squid" and not proxied:  # only proxied tiers have an egress proxy: one line, exit 2
        out = run("policy", "compile", tier, "--target", target)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no egress proxy" in out.stderr
        return
    if target == "devcontainer" and proxied:  # a directory: devcontainer.json, compose.yaml, squid.conf
        assert run("policy", "compile", tier, "--target", target).returncode == 2  # needs -o
        out = run("policy", "compile", tier, "--target", target, "-o", str(tmp_path / ".devcontainer"))
        assert out.returncode == 0, out.stderr
        assert json.loads((tmp_path / ".devcontainer" / "devcontainer.json").read_text())["dockerComposeFile"]
        return
    out = run("policy", "compile", tier, "--target", target)
    assert out.returncode == 0, out.stderr
    if target == "leash":
        import cedarpy

        assert cedarpy.format_policies(out.stdout)  # the real Cedar parser accepts it
    elif target == "squid":
        assert "http_port 3128 ssl-bump" in out.stdout
    else:
        assert json.loads(out.stdout)


@pytest.mark.parametrize("target", ["run-args", "devcontainer"])
def test_paranoid_flags_name_a_seccomp_profile_that_compile_writes(home: Path, target):
    out = run("policy", "compile", "paranoid", "--target", target)
    assert out.returncode == 0, out.stderr
    (written,) = (home / ".local/share/agent-sandbox/seccomp").iterdir()
    assert json.loads(written.read_text())["defaultAction"] == "SCMP_ACT_ERRNO"
    assert f"{written} (the flags name it" in out.stderr
    flags = json.loads(out.stdout) if target == "run-args" else json.loads(out.stdout)["runArgs"]
    named = [f.split("=", 2)[2] for f in flags if f.startswith("--security-opt=seccomp=")]
    if target == "run-args":
        assert named == [str(written)]
    else:  # each user of devcontainer.json resolves its own home
        assert named == ["${localEnv:HOME}/.local/share/agent-sandbox/seccomp/" + written.name]
    assert run("policy", "compile", "paranoid", "--target", "seccomp").stdout == written.read_text()


def test_seccomp_file_option_moves_the_profile(tmp_path: Path, home: Path):
    target = tmp_path / "profile.json"
    out = run("policy", "compile", "paranoid", "--target", "run-args", "--seccomp-file", str(target))
    assert out.returncode == 0, out.stderr
    assert f"--security-opt=seccomp={target}" in json.loads(out.stdout)
    assert json.loads(target.read_text())["syscalls"]
    assert not (home / ".local").exists()


@pytest.mark.parametrize("tier", ["strict", "standard", "trusted"])
def test_tiers_without_a_seccomp_profile_say_so(home: Path, tier):
    out = run("policy", "compile", tier, "--target", "seccomp")
    assert out.returncode == 2 and "keeps the engine's default seccomp profile" in out.stderr
    out = run("policy", "compile", tier, "--target", "run-args")
    assert not any(f.startswith("--security-opt=seccomp") for f in json.loads(out.stdout))
    assert not (home / ".local").exists()


def test_missing_trusted_mount_sources_are_warned_about(home: Path):
    (home / ".gitconfig").write_text("[user]\n")
    out = run("policy", "compile", "trusted", "--target", "run-args")
    assert out.returncode == 0, out.stderr
    assert f"mounts {home}/.ssh at /home/vscode/.ssh, which does not exist here" in out.stderr
    assert ".gitconfig" not in out.stderr


@pytest.mark.parametrize("tier", TIERS)
def test_explain_names_the_layers(tier):
    out = run("policy", "explain", tier)
    assert out.returncode == 0, out.stderr
    assert "container runtime" in out.stdout


def test_check_accepts_a_good_profile(write_profile):
    path = write_profile("inherits: strict\nnetwork:\n  allow+: ['db:5432']\n")
    out = run("policy", "check", str(path))
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.parametrize(
    "text, where",
    [
        ("name: x\nnetwork:\n  allow: ['a:0']\n", ":3: network.allow[0]:"),
        ("inherits: ghost\n", ":1: inherits:"),
        ("name: x\nbogus: 1\n", ":2: bogus:"),
    ],
)
def test_bad_profile_is_one_line_exit_2_no_traceback(write_profile, text, where):
    path = write_profile(text)
    out = run("policy", "check", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"agent-sandbox: {path}") and where in lines[0]
    assert "Traceback" not in out.stderr


def test_unknown_tier_is_exit_2():
    out = run("policy", "compile", "no-such-tier", "--target", "leash")
    assert out.returncode == 2
    assert "no such profile" in out.stderr


def test_output_file_is_written_atomically(tmp_path: Path):
    target = tmp_path / "strict.cedar"
    out = run("policy", "compile", "strict", "--target", "leash", "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert target.read_text().strip()
    assert [p.name for p in tmp_path.iterdir()] == ["strict.cedar"]  # no temp files left behind


def test_generated_policies_for_nix_are_fresh():
    out = run("policy", "compile-all", "--check")
    assert out.returncode == 0, out.stderr + out.stdout


# ------------------------------------------------------------ build and verify: bad input, exit 2, nothing started
BROKEN_IMAGE = 'name = "broken"\nregistry = "ghcr.io/example/broken"\ntier = "strict"\nuid = "abc"\n'


@pytest.mark.parametrize(
    "args, words",
    [
        (["build", "--backend", "debian", "--dry-run", "--agents", ",,"], "--agents: name at least one agent; known:"),
        (["build", "--backend", "nix", "--dry-run", "--agents", ",,"], "--agents: name at least one agent; known:"),
        (["build", "--backend", "debian", "--dry-run", "--agents", "nope"], "--agents: unknown agent 'nope'; known:"),
        (["build", "--backend", "nix", "--dry-run", "--agents", "claude,nope"], "unknown agent 'nope'; known:"),
        (["build", "--backend", "debian", "--dry-run", "--tier", "nope"], "--tier: unknown tier 'nope'; known:"),
        (["build", "--backend", "nix", "--dry-run", "--tier", "nope"], "--tier: unknown tier 'nope'; known:"),
        (["build", "NOSUCHIMAGE", "--dry-run"], "unknown image 'NOSUCHIMAGE'"),
        (["build", "{broken}", "--dry-run"], "{broken}/image.toml:4: uid: must be a whole number"),
        (["build", "{broken}/image.toml", "--backend", "nix", "--dry-run"], "image.toml:4: uid: must be a whole"),
        (["verify", "agent-sandbox-devcontainer", "--tier", "nope"], "nope"),
        (["build", "--backend", "nix", "--dry-run", "--tag", "localhost/x:1"], "--tag: only the Debian backend"),
        (["build", "--backend", "debian", "--dry-run", "--tag", "Bad Ref"], "--tag: 'Bad Ref': not an image"),
        (["lock", "--update", "cursor"], "--update: nothing called 'cursor' in this image's lock; known: node, npm"),
        (["lock", "claude"], "claude: component names go with --update"),
        (["lock", "--check", "--update"], "--check changes nothing"),
    ],
)
def test_bad_build_and_verify_input_is_one_line_exit_2(tmp_path: Path, args, words):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "image.toml").write_text(BROKEN_IMAGE, encoding="utf-8")
    args = [a.replace("{broken}", str(broken)) for a in args]
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("agent-sandbox: ")
    assert words.replace("{broken}", str(broken)) in lines[0]
    assert "Traceback" not in out.stderr
