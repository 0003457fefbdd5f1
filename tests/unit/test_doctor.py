"""`agent-sandbox doctor`: facts of this host read truthfully, and recorded hosts assessed as they should be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sandbox import doctor

# Recorded hosts (facts as `doctor --json` prints them) and what must be said about them.
HOSTS = {
    "docker-desktop": (
        {
            "engine": "docker",
            "engine_version": "28.2.2",
            "rootless": False,
            "cgroup": 2,
            "seccomp": True,
            "user_namespaces": True,
            "lsm": ["lockdown", "capability", "landlock", "yama"],
            "leash": "1.1.5",
            "docker_cli": True,
            "compose": ["docker-compose"],
            "devcontainer_cli": True,
        },
        {("Leash", "missing", "BPF LSM")},
        {("Leash", "ok")},
    ),
    "rootless-podman": (
        {
            "engine": "podman",
            "engine_version": "5.2.0",
            "rootless": True,
            "cgroup": 2,
            "seccomp": True,
            "user_namespaces": True,
            "lsm": ["capability", "bpf"],
            "leash": "",
            "docker_cli": False,
        },
        {("Leash", "missing", "rootless"), ("Leash", "missing", "not installed"), ("devcontainer", "degraded", "CLI")},
        {("egress proxy", "ok")},
    ),
    "everything": (
        {
            "engine": "docker",
            "engine_version": "27.0",
            "rootless": False,
            "cgroup": 2,
            "seccomp": True,
            "user_namespaces": False,
            "lsm": ["capability", "landlock", "bpf"],
            "leash": "1.1.5",
            "docker_cli": True,
            "compose": ["docker-compose"],
            "devcontainer_cli": True,
            "forward_policy": "DROP",
        },
        set(),
        {("Leash", "ok"), ("egress proxy", "ok"), ("container", "ok")},
    ),
    "docker-host-podman-without-the-rule": (
        {
            "engine": "podman",
            "engine_version": "4.3.1",
            "cgroup": 1,
            "seccomp": True,
            "forward_policy": "DROP",
            "bridge_rule": False,
            "compose": ["podman-compose"],
            "devcontainer_cli": True,
        },
        {("egress proxy", "missing", "FORWARD"), ("Leash", "missing", "cgroup v2")},
        set(),
    ),
}


@pytest.mark.parametrize("host", list(HOSTS))
def test_recorded_hosts_are_assessed(host):
    facts, missing_or_weak, ok = HOSTS[host]
    findings = doctor.assess(doctor.Facts.from_json(facts))
    said = {(f.layer, f.status) for f in findings}
    for layer, status, words in missing_or_weak:
        assert any(f.layer == layer and f.status == status and words in f.what for f in findings), (host, findings)
        assert any(f.fix for f in findings if f.layer == layer and f.status == status)
    assert ok <= said
    if not missing_or_weak:
        assert doctor.can_enforce_leash(doctor.Facts.from_json(facts)) == []
    assert doctor.render(doctor.Facts.from_json(facts), findings)


def test_kernel_facts_from_a_recorded_root(tmp_path: Path):
    for path, text in {
        "sys/kernel/security/lsm": "lockdown,capability,bpf\n",
        "sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
        "proc/self/status": "Name:\tx\nSeccomp:\t2\n",
        "proc/sys/user/max_user_namespaces": "0\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    facts = doctor.kernel_facts(tmp_path)
    assert facts["lsm"] == ["lockdown", "capability", "bpf"] and facts["cgroup"] == 2
    assert facts["seccomp"] is True and facts["user_namespaces"] is False


def test_this_host_is_described_truthfully():
    """What doctor says about this machine is what /proc and /sys say."""
    done = subprocess.run(
        [sys.executable, "-m", "agent_sandbox.cli", "doctor", "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr
    facts = json.loads(done.stdout)["facts"]
    lsm = Path("/sys/kernel/security/lsm")
    assert facts["lsm"] == (lsm.read_text().strip().split(",") if lsm.exists() else [])
    assert facts["cgroup"] == (
        2 if Path("/sys/fs/cgroup/cgroup.controllers").exists() else 1 if Path("/sys/fs/cgroup/memory").is_dir() else 0
    )
    assert facts["seccomp"] == ("Seccomp:" in Path("/proc/self/status").read_text())
