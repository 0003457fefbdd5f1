"""`agent-sandbox verify`'s report and exit, from a pytest JUnit file (no container)."""

from __future__ import annotations

import pytest

from agent_sandbox.cli import verify as v
from agent_sandbox.errors import ChecksFailed, CommandFailed, InputError

# As pytest writes it: the plugin gives each conformance test the properties `area` (its marker) and `tier`.
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="test_capabilities" name="test_capability_sets_hold_only_what_the_tier_grants[strict]">
  <properties><property name="area" value="capabilities"/><property name="tier" value="strict"/></properties>
</testcase>
<testcase classname="test_limits" name="test_cgroup_limits_are_the_tiers[strict]">
  <properties><property name="area" value="limits"/><property name="tier" value="strict"/></properties>
  <failure message="ConformanceFailure: tier strict: cgroup pids.max is max, the tier says 512">...</failure></testcase>
<testcase classname="test_tools" name="test_tool_answers_its_check[just-paranoid]">
  <properties><property name="area" value="tools"/><property name="tier" value="paranoid"/></properties>
  <skipped message="the image's label says it goes without just"/></testcase>
<testcase classname="test_suite_can_fail" name="test_weakened_sandbox_is_caught[strict-without-cap-drop-ALL]">
  <properties><property name="area" value="suite self-test"/><property name="tier" value=""/></properties>
</testcase>
<testcase classname="test_unmarked" name="test_without_an_area[strict]"/>
</testsuite></testsuites>"""


def test_outcomes_are_grouped_by_tier_and_area(tmp_path):
    """Area and tier are the test's properties, never guessed from its module or its id (a test without an area
    counts under its module's name, for no tier)."""
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    outcomes = v.read_junit(path)
    assert [(o.area, o.tier, o.status) for o in outcomes] == [
        ("capabilities", "strict", "passed"),
        ("limits", "strict", "failed"),
        ("tools", "paranoid", "skipped"),
        ("suite self-test", "", "passed"),
        ("test_unmarked", "", "passed"),
    ]
    text = v.render("IMG", "podman", ("paranoid", "strict"), outcomes, 1000, 1000)
    assert "strict: FAILED (1 passed, 1 failed)" in text
    assert "FAIL    limits: 1 failed" in text and "claims  network: loopback only" in text
    assert "cgroup pids.max is max" in text and text.rstrip().endswith("3 passed, 1 failed, 1 skipped")
    assert "ok      suite self-test: 1 passed" in text.splitlines()


def outcome(area: str, tier: str, status: str, message: str = "") -> v.Outcome:
    return v.Outcome(area, tier, f"test_{area}[{tier}]", status, message)


PASSED, FAILED = outcome("capabilities", "strict", "passed"), outcome("limits", "strict", "failed")
SKIPPED = outcome("tools", "strict", "skipped", "the image has no python3")


@pytest.mark.parametrize(
    ("outcomes", "verdict", "area_line"),
    [
        ([PASSED], "strict: verified (1 passed)", "ok      capabilities: 1 passed"),
        ([PASSED, FAILED], "strict: FAILED (1 passed, 1 failed)", "FAIL    limits: 1 failed"),
        (
            [SKIPPED],
            "strict: NOT verified (1 skipped)",
            "----    tools: NOT verified (1 skipped: the image has no python3)",
        ),
        (
            [PASSED, SKIPPED],
            "strict: partly verified (1 passed, 1 skipped); NOT verified: tools",
            "----    tools: NOT verified (1 skipped: the image has no python3)",
        ),
        ([], "strict: not run", None),
    ],
    ids=["passed", "failed", "all-skipped", "an-area-skipped", "not-run"],
)
def test_a_tier_or_area_is_verified_only_by_a_passing_check(outcomes, verdict, area_line):
    lines = v.render("IMG", "podman", ("strict",), outcomes, 1000, 1000).splitlines()
    assert verdict in lines
    if area_line:
        assert f"  {area_line}" in lines
    assert not [line for line in lines if " verified" in line and "skipped" in line and "NOT verified" not in line]


STRICT, BOTH = ("strict",), ("paranoid", "strict")
PARANOID_PASSED = outcome("capabilities", "paranoid", "passed")


@pytest.mark.parametrize(
    ("code", "outcomes", "tiers", "keyword", "error", "message"),
    [
        (0, [PASSED], STRICT, None, None, None),
        (0, [PASSED, SKIPPED], STRICT, None, None, None),  # partly verified: reported, not an error
        (1, [PASSED, FAILED], STRICT, None, ChecksFailed, "1 conformance check failed for tier strict; see above"),
        (
            1,
            [FAILED, outcome("limits", "paranoid", "failed"), outcome("suite", "", "failed")],
            BOTH,
            None,
            ChecksFailed,
            "3 conformance checks failed for tiers strict, paranoid; see above",
        ),
        (1, [PASSED], STRICT, None, ChecksFailed, "the conformance suite failed (pytest exit status 1); see above"),
        (
            0,
            [SKIPPED],
            STRICT,
            None,
            ChecksFailed,
            "nothing was verified for tier strict: no check passed (all skipped); see above",
        ),
        (
            0,
            [PARANOID_PASSED],
            BOTH,
            None,
            ChecksFailed,
            "nothing was verified for tier strict: no check passed (all skipped); see above",
        ),
        (0, [PARANOID_PASSED], BOTH, "paranoid", None, None),  # -k chose no strict test: strict was not run
        (5, [], STRICT, "nothing-matches", InputError, "no conformance test matched (-k 'nothing-matches')"),
        (5, [], STRICT, None, CommandFailed, "the conformance suite collected no test"),
        (2, [PASSED], STRICT, None, CommandFailed, "the conformance suite stopped abnormally (pytest exit status 2)"),
    ],
)
def test_verify_exits_zero_only_when_every_tier_was_verified(code, outcomes, tiers, keyword, error, message):
    got = v.outcome_error(code, outcomes, tiers, keyword)
    if error is None:
        assert got is None
    else:
        assert type(got) is error and str(got) == message


def test_the_suite_is_run_with_the_callers_choices(tmp_path):
    argv = v.pytest_argv(
        tmp_path, tmp_path / "pytest.ini", "IMG", ("strict",), "docker", "network", None, tmp_path / "j.xml"
    )
    assert argv[:2] == ["--pyargs", "agent_sandbox.conformance.suite"]
    assert {"--image=IMG", "--engine=docker", "--tier=strict"} <= set(argv)
    assert argv[-2:] == ["-k", "network"]


def test_the_suite_is_the_installed_package_and_nothing_around_it(tmp_path):
    """The shipped suite's directory, its own (empty) settings, and no conftest.py from above it: agent-sandbox
    installed in someone's project must not run with that project's pytest settings."""
    suite = v.suite_dir()
    assert (suite / "test_capabilities.py").is_file() and (suite / "__init__.py").is_file()
    argv = v.pytest_argv(suite, tmp_path / "pytest.ini", "IMG", ("strict",), "podman", None, None, tmp_path / "j")
    assert ["-c", str(tmp_path / "pytest.ini")] == argv[argv.index("-c") : argv.index("-c") + 2]
    assert {f"--rootdir={suite}", f"--confcutdir={suite}"} <= set(argv)
