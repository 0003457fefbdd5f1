"""The suite can fail: deliberately weakened sandboxes are caught by the very checks the suite runs.

Each case starts a container with a tier's compiled flags minus (or plus) one thing, collects the same facts the
suite collects, and expects the same check to raise ConformanceFailure against that tier's expectations; the
check is first shown to pass on the tier's real sandbox, so the failure is the weakening's doing. Only the cases
of the tiers being verified run (`verify --tier strict` starts no paranoid sandbox).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent_sandbox import conformance, profiles, runtime
from agent_sandbox.compilers.runargs import run_args
from agent_sandbox.conformance import Expectations, Probe
from agent_sandbox.conformance.session import OUTSIDE_NETWORK, OutsideServer, Session
from agent_sandbox.model import WORKSPACE
from agent_sandbox.pytest_plugin import selected_tiers

pytestmark = [pytest.mark.area("suite self-test (weakened sandboxes are caught)"), pytest.mark.container]

Check = Callable[[Expectations, Probe, pytest.FixtureRequest], None]
Adjust = Callable[[list[str]], list[str]]


def _caps(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_capabilities(exp, probe.statuses())


def _nnp(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_no_new_privileges(exp, probe.statuses())


def _root(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_root_filesystem(exp, probe.mounts(), probe.try_writes(conformance.SYSTEM_DIRS))


def _interfaces(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_interfaces(exp, probe.interfaces())


def _limits(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_limits(exp, probe.cgroup_limits())


def _workspace(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_workspace_mount(exp, probe.mounts())


def _host_paths(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_host_mounts(exp, probe.mounts())


def _denied(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_denied_paths(exp, probe.path_states(exp.denied_paths))


def _identity(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    user = probe.host.user()
    conformance.check_identity(exp, uid=user.uid, user=user.name, init_uids=probe.status("1")["Uid"])


def _outside(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    session: Session = request.getfixturevalue("session")
    session.require_python3(probe.host)
    outside: OutsideServer = request.getfixturevalue("outside")
    reached = {a: probe.fetch_token(a, outside.port, outside.token) for a in outside.addresses}
    conformance.check_outside_reach(exp, reached)


def _userns(exp: Expectations, probe: Probe, request: pytest.FixtureRequest) -> None:
    conformance.check_user_namespaces(exp, probe.user_namespace_attempts())


def _seccomp_unconfined(flags: list[str]) -> list[str]:
    return runtime.replace_flag(flags, "--security-opt=seccomp=", "--security-opt=seccomp=unconfined")


def _workspace_rw(flags: list[str]) -> list[str]:
    return [f.replace(",readonly", "") if f.startswith("--mount=") and f"target={WORKSPACE}" in f else f for f in flags]


def _plus_fake_aws(session: Session) -> Adjust:
    fake = session.base / "fake-aws"
    fake.mkdir(exist_ok=True)
    (fake / "credentials").write_text("[default]\naws_access_key_id = FAKE-conformance\n")
    fake.chmod(0o755)
    (fake / "credentials").chmod(0o644)
    return lambda flags: flags + [f"--mount=type=bind,source={fake},target=/home/vscode/.aws,readonly"]


def _as_root(flags: list[str]) -> list[str]:
    return runtime.replace_flag(flags, "--user=", "--user=0:0")


def _host_dir_as_scratch(session: Session) -> Adjust:
    home = session.base / "host-home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    return lambda flags: [
        f"--mount=type=bind,source={home},target={f.split('target=')[1]}" if f.startswith("--mount=type=volume,") else f
        for f in flags
    ]


CASES = [
    pytest.param("strict", "drop", ("--cap-drop=",), _caps, "CapBnd|CapPrm|CapEff", id="strict-without-cap-drop-ALL"),
    pytest.param(
        "strict",
        "drop",
        ("--security-opt=no-new-privileges",),
        _nnp,
        "NoNewPrivs",
        id="strict-without-no-new-privileges",
    ),
    pytest.param("strict", "root", (), _identity, r"uid 0 \(root\)", id="strict-as-root"),
    pytest.param("paranoid", "drop", ("--read-only",), _root, "mounted rw", id="paranoid-without-read-only-root"),
    pytest.param("paranoid", "drop", ("--network=",), _interfaces, "loopback only", id="paranoid-on-a-network"),
    pytest.param(
        "strict", "also-routed", (), _outside, "reached the outside server", id="strict-also-on-an-open-network"
    ),
    pytest.param("strict", "drop", ("--pids-limit=",), _limits, "pids.max", id="strict-without-pids-limit"),
    pytest.param(
        "standard", "drop", ("--memory=", "--memory-swap="), _limits, "memory limit", id="standard-without-memory-limit"
    ),
    pytest.param("paranoid", "workspace-rw", (), _workspace, "mounted rw", id="paranoid-with-a-rw-workspace"),
    pytest.param("strict", "fake-aws", (), _host_paths, "host path", id="strict-with-a-host-dir-mounted"),
    pytest.param(
        "paranoid",
        "host-scratch",
        (),
        _host_paths,
        "should be a scratch volume but is host path",
        id="paranoid-with-a-host-dir-as-scratch-home",
    ),
    pytest.param("strict", "fake-aws", (), _denied, r"\.aws is mount", id="strict-with-aws-credentials-mounted"),
    # podman's default seccomp profile lets a user namespace be created; docker's refuses it without CAP_SYS_ADMIN,
    # so there dropping the tier's profile weakens nothing (skipped) and `unconfined` is the weakening to catch
    pytest.param(
        "paranoid",
        "drop",
        ("--security-opt=seccomp=",),
        _userns,
        "created a user namespace",
        id="paranoid-without-its-seccomp-profile",
    ),
    pytest.param(
        "paranoid", "seccomp-unconfined", (), _userns, "created a user namespace", id="paranoid-with-seccomp-unconfined"
    ),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The cases of the tiers being verified; a skip that says so when none of them has a case."""
    tiers = selected_tiers(metafunc.config)
    cases = [case for case in CASES if case.values[0] in tiers]
    none = pytest.param(
        None,
        None,
        (),
        None,
        None,
        id="none",
        marks=pytest.mark.skip(reason=f"no weakened sandbox case for tier {', '.join(tiers)}"),
    )
    metafunc.parametrize(("weakened_tier", "how", "flags", "check", "complaint"), cases or [none])


def test_weakened_sandbox_is_caught(
    weakened_tier: str,
    how: str,
    flags: tuple[str, ...],
    check: Check,
    complaint: str,
    session: Session,
    request: pytest.FixtureRequest,
) -> None:
    profile = profiles.load_profile(weakened_tier)
    exp = session.expect(profile)

    # the check holds on the tier's real sandbox ...
    real = session.probe(session.sandbox(weakened_tier))
    check(exp, real, request)

    # ... and fails on the weakened one
    if flags == ("--security-opt=seccomp=",) and session.engine.name == "docker":
        pytest.skip(
            "docker's default seccomp profile refuses user namespaces to a container without CAP_SYS_ADMIN: "
            "without the tier's profile paranoid is no weaker here (paranoid-with-seccomp-unconfined is)"
        )
    adjust: Adjust | None
    if how == "drop":
        adjust = runtime.without_flags(*flags)
    elif how == "workspace-rw":
        adjust = _workspace_rw
    elif how == "host-scratch":
        adjust = _host_dir_as_scratch(session)
    elif how == "root":
        adjust = _as_root
    elif how == "also-routed":  # the tier's flags as they are; the agent joins the outside server's network after
        adjust = None
    elif how == "seccomp-unconfined":
        adjust = _seccomp_unconfined
    else:
        adjust = _plus_fake_aws(session)
    tier_flags = run_args(profile, workspace="/w", host_env=session.host_env(), uid=session.uid, gid=session.gid)
    assert adjust is None or adjust(list(tier_flags)) != tier_flags, "the weakening changes nothing"
    weak = session.start(profile, label=f"weakened-{weakened_tier}", adjust=adjust)
    if how == "also-routed":
        request.getfixturevalue("outside")
        session.engine.run(["network", "connect", OUTSIDE_NETWORK, weak.name])
    try:
        probe = session.probe(weak)
        with pytest.raises(conformance.ConformanceFailure, match=complaint):
            check(exp, probe, request)
    finally:
        weak.remove()
