"""The seccomp profile of tiers without user namespaces (compilers/seccomp.py), read back by a small evaluator of the
docker/OCI profile format: it refuses user namespaces for every capability set, and keeps every protection of the
engines' own defaults (podman's file when the host has it; what docker documents its default to refuse)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from agent_sandbox import profiles
from agent_sandbox.compilers import seccomp as sc
from agent_sandbox.compilers.runargs import run_args, run_spec

PODMAN_DEFAULT = Path("/usr/share/containers/seccomp.json")
ARCH = "amd64"
SIGCHLD = 17

# Capability sets to evaluate under: paranoid's (none), docker's defaults, and one that adds CAP_SYS_ADMIN.
DOCKER_DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)
CAP_SETS = {
    "none": frozenset(),
    "docker-default": DOCKER_DEFAULT_CAPS,
    "sys-admin": DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN"},
}

# What docker's documentation lists as refused by its default profile to a container without the capability
# (docs.docker.com/engine/security/seccomp/, "Significant syscalls blocked by the default profile").
DOCKER_REFUSES = (
    "acct",
    "add_key",
    "bpf",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapon",
    "swapoff",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)


# ---------------------------------------------------------------- a small evaluator of the profile format
def _applies(rule: Mapping[str, Any], caps: frozenset[str], arch: str) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    return True


def _arg_matches(cond: Mapping[str, Any], args: tuple[int, ...]) -> bool:
    value, two, op = cond["value"], cond.get("valueTwo", 0), cond["op"]
    arg = args[cond["index"]] if cond["index"] < len(args) else 0
    return {
        "SCMP_CMP_EQ": arg == value,
        "SCMP_CMP_NE": arg != value,
        "SCMP_CMP_LT": arg < value,
        "SCMP_CMP_LE": arg <= value,
        "SCMP_CMP_GT": arg > value,
        "SCMP_CMP_GE": arg >= value,
        "SCMP_CMP_MASKED_EQ": (arg & value) == two,
    }[op]


def _rules(profile: Mapping[str, Any], name: str, caps: frozenset[str], arch: str) -> list[Mapping[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"] and _applies(r, caps, arch)]


def decide(
    profile: Mapping[str, Any],
    name: str,
    args: tuple[int, ...] = (),
    *,
    caps: frozenset[str] = frozenset(),
    arch: str = ARCH,
    strict: bool = True,
) -> tuple[str, int | None]:
    """(action, errno) of a call. `strict`: matching rules of different outcomes are an error (ours never has
    them); otherwise an ALLOW wins (how "allowed" is read for the engines' own files)."""
    matching = [r for r in _rules(profile, name, caps, arch) if all(_arg_matches(c, args) for c in r.get("args") or [])]
    outcomes = {(r["action"], r.get("errnoRet")) for r in matching}
    if strict:
        assert len(outcomes) <= 1, f"{name}{args}: rules of different outcomes match: {outcomes}"
    if any(action == "SCMP_ACT_ALLOW" for action, _ in outcomes):
        return "SCMP_ACT_ALLOW", None
    if outcomes:
        return sorted(outcomes, key=str)[0]
    return profile["defaultAction"], profile.get("defaultErrnoRet")


def allowed(profile: Mapping[str, Any], name: str, args: tuple[int, ...] = (), **kw: Any) -> bool:
    return decide(profile, name, args, **kw)[0] == "SCMP_ACT_ALLOW"


def ever_allowed(profile: Mapping[str, Any], name: str, caps: frozenset[str], arch: str = ARCH) -> bool:
    """Some argument values are allowed (an ALLOW rule applies, conditional or not)."""
    return any(r["action"] == "SCMP_ACT_ALLOW" for r in _rules(profile, name, caps, arch))


def always_allowed(profile: Mapping[str, Any], name: str, caps: frozenset[str], arch: str = ARCH) -> bool:
    return any(r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in _rules(profile, name, caps, arch))


def names(profile: Mapping[str, Any]) -> Iterable[str]:
    return sorted({n for r in profile["syscalls"] for n in r["names"]})


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return sc.no_user_namespaces_profile()


# ---------------------------------------------------------------- user namespaces
USERNS_CALLS = [
    ("unshare", (sc.CLONE_NEWUSER,)),
    ("unshare", (sc.CLONE_NEWUSER | sc.CLONE_NEWNS,)),
    ("clone", (sc.CLONE_NEWUSER | SIGCHLD, 0)),
    ("clone", (sc.CLONE_NEWUSER | sc.CLONE_NEWNET | SIGCHLD, 0)),
]


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
@pytest.mark.parametrize(("name", "args"), USERNS_CALLS)
def test_no_user_namespace_for_any_capability_set(ours, name, args, caps):
    assert decide(ours, name, args, caps=caps) == ("SCMP_ACT_ERRNO", sc.EPERM)


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
def test_clone_flags_on_s390_are_the_second_argument(ours, caps):
    assert decide(ours, "clone", (0, sc.CLONE_NEWUSER | SIGCHLD), caps=caps, arch="s390x") == (
        "SCMP_ACT_ERRNO",
        sc.EPERM,
    )
    assert allowed(ours, "clone", (0, SIGCHLD), caps=caps, arch="s390x")


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
def test_clone3_and_setns_are_refused(ours, caps):
    assert decide(ours, "clone3", (0, 88), caps=caps) == ("SCMP_ACT_ERRNO", sc.ENOSYS)  # glibc falls back to clone
    assert decide(ours, "setns", (3, 0), caps=caps) == ("SCMP_ACT_ERRNO", sc.EPERM)


THREAD_FLAGS = 0x3D0F00  # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID (pthreads)


@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
def test_fork_threads_and_unshare_without_namespaces_still_work(ours, caps):
    assert allowed(ours, "clone", (SIGCHLD, 0), caps=caps)
    assert allowed(ours, "clone", (THREAD_FLAGS, 0), caps=caps)
    assert allowed(ours, "fork", caps=caps) and allowed(ours, "vfork", caps=caps)
    # unshare(2) without a namespace flag (CLONE_FILES): only with CAP_SYS_ADMIN, as docker's default
    assert allowed(ours, "unshare", (0x400,), caps=caps) == ("CAP_SYS_ADMIN" in caps)


def test_other_namespaces_need_cap_sys_admin_as_under_docker(ours):
    for flag in sc.NAMESPACE_FLAGS:
        if flag != sc.CLONE_NEWUSER:
            assert decide(ours, "unshare", (flag,), caps=CAP_SETS["docker-default"]) == ("SCMP_ACT_ERRNO", sc.EPERM)
            assert allowed(ours, "unshare", (flag,), caps=CAP_SETS["sys-admin"])


# ---------------------------------------------------------------- the engines' protections stay
@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
def test_rules_never_conflict(ours, caps):
    """No call is matched by rules of different outcomes (libseccomp's answer would depend on its internals)."""
    samples = [(), (0,), (sc.CLONE_NEWUSER,), (16, 3, 9), (16, 3, 0), (40, 1, 0), (2, 1, 0), (SIGCHLD, 0)]
    for name in names(ours):
        for args in samples:
            decide(ours, name, args, caps=caps)


def test_no_rule_compares_an_argument_twice(ours):
    """runc adds such a rule as one rule per comparison (OR): `domain != 40 and domain != 16` would allow all."""
    for rule in ours["syscalls"]:
        indices = [c["index"] for c in rule.get("args") or []]
        assert len(indices) == len(set(indices)), rule


@pytest.mark.parametrize("name", DOCKER_REFUSES)
def test_what_dockers_default_refuses_stays_refused(ours, name):
    assert not allowed(ours, name, (0,), caps=frozenset()), name
    assert not allowed(ours, name, (sc.CLONE_NEWUSER,), caps=frozenset()), name


@pytest.mark.skipif(not PODMAN_DEFAULT.is_file(), reason=f"no {PODMAN_DEFAULT} (podman's default) on this host")
@pytest.mark.parametrize("caps", CAP_SETS.values(), ids=list(CAP_SETS))
def test_nothing_podmans_default_refuses_is_allowed(ours, caps):
    podman = json.loads(PODMAN_DEFAULT.read_text())
    looser = [n for n in names(ours) if always_allowed(ours, n, caps) and not always_allowed(podman, n, caps)]
    looser += [n for n in names(ours) if ever_allowed(ours, n, caps) and not ever_allowed(podman, n, caps)]
    assert not looser, f"allowed here but not by {PODMAN_DEFAULT}: {sorted(set(looser))}"
    # the conditional ones, on the arguments that matter
    for name, args in [("socket", (40, 1, 0)), ("socket", (16, 3, 9)), ("personality", (0x40000,))]:
        if allowed(ours, name, args, caps=caps):
            assert allowed(podman, name, args, caps=caps, strict=False), (name, args)


@pytest.mark.skipif(not PODMAN_DEFAULT.is_file(), reason=f"no {PODMAN_DEFAULT} (podman's default) on this host")
def test_podmans_default_is_what_lets_the_agent_create_user_namespaces():
    """Why the tier needs its own profile on podman (docker's default refuses these without CAP_SYS_ADMIN)."""
    podman = json.loads(PODMAN_DEFAULT.read_text())
    assert allowed(podman, "unshare", (sc.CLONE_NEWUSER,), strict=False)
    assert allowed(podman, "clone", (sc.CLONE_NEWUSER | SIGCHLD, 0), strict=False)


def test_the_socket_rules_refuse_vsock_and_the_audit_socket_only(ours):
    none, audit = frozenset(), frozenset({"CAP_AUDIT_WRITE"})
    for domain in (1, 2, 10, 16, 17, 39, 41, 44):
        assert allowed(ours, "socket", (domain, 1, 0), caps=none), domain
    assert not allowed(ours, "socket", (40, 1, 0), caps=none)
    assert decide(ours, "socket", (16, 3, 9), caps=none) == ("SCMP_ACT_ERRNO", sc.EINVAL)
    assert allowed(ours, "socket", (16, 3, 9), caps=audit)
    assert not allowed(ours, "socket", (40, 1, 0), caps=audit)


def test_unknown_calls_get_enosys(ours):
    assert decide(ours, "some_future_call") == ("SCMP_ACT_ERRNO", sc.ENOSYS)


# ---------------------------------------------------------------- where the file is and who names it
def test_only_tiers_refusing_user_namespaces_get_a_profile():
    assert [t for t in ("paranoid", "strict", "standard", "trusted") if sc.needs_seccomp(profiles.load_profile(t))] == [
        "paranoid"
    ]
    assert sc.seccomp_json(profiles.load_profile("strict")) is None


def test_the_flag_names_the_file_by_its_hash_under_the_users_home():
    paranoid = profiles.load_profile("paranoid")
    text = sc.seccomp_json(paranoid)
    assert text is not None and json.loads(text) == sc.no_user_namespaces_profile()
    path = sc.default_seccomp_path(paranoid)
    assert path == f"${{localEnv:HOME}}/.local/share/agent-sandbox/seccomp/{sc.seccomp_file_name(text)}"
    assert f"--security-opt=seccomp={path}" in run_spec(paranoid).flags
    resolved = f"--security-opt=seccomp=/home/me/.local/share/agent-sandbox/seccomp/{sc.seccomp_file_name(text)}"
    assert resolved in run_args(paranoid, host_env={"HOME": "/home/me"})
    assert "--security-opt=seccomp=/state/seccomp.json" in run_args(paranoid, seccomp="/state/seccomp.json")


def test_a_profile_inherits_and_overrides_user_namespaces(tmp_path: Path):
    (tmp_path / "mine.yaml").write_text("inherits: paranoid\n")
    (tmp_path / "open.yaml").write_text("inherits: paranoid\ncontainer:\n  user_namespaces: true\n")
    assert not profiles.load_profile(tmp_path / "mine.yaml").container.user_namespaces
    loosened = profiles.load_profile(tmp_path / "open.yaml")
    assert loosened.container.user_namespaces
    assert not any(f.startswith("--security-opt=seccomp=") for f in run_args(loosened))
