"""What this host can enforce, per layer and tier, and how to fix what is missing.

`gather` reads the host (files under a root, so that recorded hosts can be read the same way, and a few commands
at the edge); `assess` is pure: facts in, findings out. `agent-sandbox doctor` prints them; `--json` for machines.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import process
from .engine import Engine

OK, DEGRADED, MISSING = "ok", "degraded", "missing"


@attrs.frozen
class Facts:
    """What was found on a host (JSON-able, so that other hosts can be recorded and assessed here)."""

    engine: str = ""  # podman | docker | "" (none answers)
    engine_version: str = ""
    rootless: bool = False
    cgroup: int = 0  # 1, 2, or 0 (hybrid/unknown: v1 controllers)
    seccomp: bool = False
    user_namespaces: bool = False
    lsm: tuple[str, ...] = ()
    forward_policy: str = ""  # iptables FORWARD policy: ACCEPT | DROP | "" (unknown)
    bridge_rule: bool = False  # scripts/setup-host.sh's rule for podman bridges
    xt_cgroup: bool = False
    leash: str = ""  # the Leash CLI's version, "" when absent
    docker_cli: bool = False  # Leash drives the docker CLI
    compose: tuple[str, ...] = ()  # docker-compose, podman-compose, docker compose
    devcontainer_cli: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Facts:
        fields = {f.name for f in attrs.fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


@attrs.frozen
class Finding:
    layer: str  # container | egress proxy | key gateway | Leash | devcontainer
    status: str  # ok | degraded | missing
    what: str
    fix: str = ""
    tiers: tuple[str, ...] = ()  # the tiers it matters for (empty: all)


# ---------------------------------------------------------------- gathering (the edge)
def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return None


def kernel_facts(root: Path = Path("/")) -> dict[str, Any]:
    """Facts read from /sys and /proc under `root`."""
    lsm = (_read(root, "/sys/kernel/security/lsm") or "").strip()
    status = _read(root, "/proc/self/status") or ""
    controllers = _read(root, "/sys/fs/cgroup/cgroup.controllers")
    cgroup = 2 if controllers is not None else (1 if (root / "sys/fs/cgroup/memory").is_dir() else 0)
    userns = (_read(root, "/proc/sys/user/max_user_namespaces") or "0").strip()
    unpriv = (_read(root, "/proc/sys/kernel/unprivileged_userns_clone") or "1").strip()
    modules = _read(root, "/proc/modules") or ""
    return {
        "lsm": [x for x in lsm.split(",") if x],
        "cgroup": cgroup,
        "seccomp": bool(re.search(r"^Seccomp:\s*\d", status, re.MULTILINE)),
        "user_namespaces": userns not in ("", "0") and unpriv != "0",
        "xt_cgroup": "xt_cgroup" in modules or (root / "sys/module/xt_cgroup").exists(),
    }


def gather(engine: Engine | None, *, root: Path = Path("/")) -> Facts:
    facts: dict[str, Any] = kernel_facts(root)
    if engine is not None:
        facts["engine"] = engine.name
        version = engine.run(["version", "--format", "{{json .}}"], check=False)
        data = json.loads(version.out) if version.ok and version.out.strip().startswith("{") else {}
        client, server = data.get("Client") or {}, data.get("Server") or {}
        facts["engine_version"] = str(server.get("Version") or client.get("Version") or "")
        info = engine.run(["info", "--format", "{{json .}}"], check=False)
        text = info.out if info.ok else ""
        facts["rootless"] = bool(re.search(r'"[Rr]ootless":\s*true', text)) or (
            engine.name == "podman" and os.geteuid() != 0
        )
    iptables = process.which("iptables")
    if iptables:
        rules = process.run([iptables, "-S", "FORWARD"], check=False)
        if rules.ok:
            policy = re.search(r"^-P FORWARD (\w+)", rules.out, re.MULTILINE)
            facts["forward_policy"] = policy.group(1) if policy else ""
            facts["bridge_rule"] = "-i podman+ -o podman+" in rules.out and "physdev-is-bridged" in rules.out
    leash = process.which("leash")
    if leash:
        out = process.run([leash, "--version"], check=False).out
        found = re.search(r"version:\s*(\S+)", out)
        facts["leash"] = found.group(1) if found else (out.strip().splitlines() or ["unknown"])[0]
    facts["docker_cli"] = process.which("docker") is not None
    compose = [name for name in ("docker-compose", "podman-compose") if process.which(name)]
    facts["compose"] = compose
    facts["devcontainer_cli"] = process.which("devcontainer") is not None
    return Facts.from_json(facts)


# ---------------------------------------------------------------- assessing (pure)
def assess(facts: Facts) -> list[Finding]:
    """Per layer: what holds on this host, what is weaker, what is missing — and the fix."""
    out: list[Finding] = []
    if not facts.engine:
        out.append(
            Finding(
                "container",
                MISSING,
                "no container engine answers: no sandbox can start",
                "install podman (scripts/setup-host.sh) or start dockerd",
            )
        )
        return out
    out.append(
        Finding(
            "container",
            OK,
            f"{facts.engine} {facts.engine_version}" + (" (rootless)" if facts.rootless else " (rootful)"),
        )
    )
    if not facts.seccomp:
        out.append(
            Finding(
                "container",
                DEGRADED,
                "no seccomp: the engine's system-call filter is not applied",
                "a kernel with CONFIG_SECCOMP",
            )
        )
    if facts.user_namespaces:
        out.append(
            Finding(
                "container",
                DEGRADED,
                "unprivileged user namespaces are allowed: an agent can unshare "
                "(Codex's own sandbox needs it; paranoid blocks it where its seccomp profile applies)",
                tiers=("strict", "standard", "trusted"),
            )
        )
    if facts.engine == "podman" and not facts.rootless and facts.forward_policy == "DROP" and not facts.bridge_rule:
        out.append(
            Finding(
                "egress proxy",
                MISSING,
                "the FORWARD policy is DROP and no rule lets a podman network "
                "carry its own traffic: an agent cannot reach its egress proxy",
                "scripts/setup-host.sh (one iptables rule for traffic inside podman bridges)",
                tiers=("strict",),
            )
        )
    else:
        out.append(
            Finding("egress proxy", OK, "per-sandbox internal networks carry traffic to the proxy", tiers=("strict",))
        )
    out.append(Finding("key gateway", OK, "keys of Anthropic, OpenAI and Gemini stay in the proxy", tiers=("strict",)))
    out += _leash(facts)
    if not facts.devcontainer_cli:
        out.append(
            Finding(
                "devcontainer", DEGRADED, "the Dev Containers CLI is not installed", "npm install -g @devcontainers/cli"
            )
        )
    compose = {"docker": "docker-compose", "podman": "podman-compose"}[facts.engine]
    if compose not in facts.compose:
        out.append(
            Finding(
                "devcontainer",
                DEGRADED,
                f"no {compose}: a proxied tier's Compose devcontainer cannot start here",
                f"install {compose}",
                tiers=("strict",),
            )
        )
    return out


def _leash(facts: Facts) -> list[Finding]:
    """Leash's kernel layer: BPF LSM, cgroup v2, privileged containers (not rootless). Without any of them Leash
    would only warn; `run --enforcer leash` refuses instead."""
    problems = []
    if "bpf" not in facts.lsm:
        problems.append(
            (
                "BPF LSM is not enabled (`bpf` missing from /sys/kernel/security/lsm)",
                "boot with lsm=...,bpf (CONFIG_BPF_LSM=y); Docker Desktop's kernel has none",
            )
        )
    if facts.cgroup != 2:
        problems.append(
            (
                "cgroup v2 is not the only hierarchy (Leash's manager requires it)",
                "boot with systemd.unified_cgroup_hierarchy=1",
            )
        )
    if facts.rootless:
        problems.append(("a rootless engine cannot run Leash's privileged manager", "use a rootful engine"))
    if not facts.docker_cli:
        problems.append(
            (
                "Leash drives the docker CLI, which is not installed",
                "install docker (or point its CLI at podman's docker API)",
            )
        )
    findings = []
    if not facts.leash:
        findings.append(
            Finding(
                "Leash",
                MISSING,
                "the leash CLI is not installed: file, exec and per-host rules of the tiers are not enforced",
                "install Leash (nix build .#leash, or its release)",
            )
        )
    else:
        findings.append(Finding("Leash", OK, f"leash {facts.leash}"))
    findings += [Finding("Leash", MISSING, what, fix) for what, fix in problems]
    return findings


def can_enforce_leash(facts: Facts) -> list[str]:
    """Why Leash cannot enforce a tier as declared on this host (empty: it can)."""
    return [f.what for f in _leash(facts) if f.status != OK]


def render(facts: Facts, findings: Sequence[Finding]) -> str:
    width = max(len(f.layer) for f in findings)
    lines = [
        f"host: {facts.engine or 'no engine'} {facts.engine_version}, cgroup v{facts.cgroup or '1 (hybrid)'}, "
        f"LSMs {','.join(facts.lsm) or 'unknown'}"
    ]
    for f in findings:
        mark = {OK: "ok  ", DEGRADED: "WEAK", MISSING: "MISS"}[f.status]
        tiers = f" [{', '.join(f.tiers)}]" if f.tiers else ""
        lines.append(f"{mark} {f.layer:<{width}}  {f.what}{tiers}")
        if f.fix:
            lines.append(f"     {'':<{width}}  fix: {f.fix}")
    return "\n".join(lines) + "\n"


__all__ = ["Facts", "Finding", "assess", "can_enforce_leash", "gather", "kernel_facts", "render"]
