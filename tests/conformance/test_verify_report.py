"""`agent-sandbox verify`'s report, from a pytest JUnit file (no container)."""

from __future__ import annotations

from agent_sandbox.cli import verify as v

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="conformance.test_capabilities" name="test_capability_sets_hold_only_what_the_tier_grants[strict]"/>
<testcase classname="conformance.test_limits" name="test_cgroup_limits_are_the_tiers[strict]">
  <failure message="ConformanceFailure: tier strict: cgroup pids.max is max, the tier says 512">...</failure></testcase>
<testcase classname="conformance.test_tools" name="test_tool_answers_its_check[just-paranoid]">
  <skipped message="the image's label says it goes without just"/></testcase>
<testcase classname="conformance.test_suite_can_fail" name="test_weakened_sandbox_is_caught[strict-without-cap-drop-ALL]"/>
</testsuite></testsuites>"""


def test_outcomes_are_grouped_by_tier_and_area(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    outcomes = v.read_junit(path, ("paranoid", "strict"))
    assert [(o.area, o.tier, o.status) for o in outcomes] == [
        ("capabilities", "strict", "passed"),
        ("limits", "strict", "failed"),
        ("tools", "paranoid", "skipped"),
        ("suite self-test (weakened sandboxes are caught)", "", "passed"),
    ]
    text = v.render("IMG", "podman", ("paranoid", "strict"), outcomes, 1000, 1000)
    assert "strict: FAILED (1 passed, 1 failed)" in text
    assert "FAIL    limits: 1 failed" in text and "claims  network: loopback only" in text
    assert "cgroup pids.max is max" in text and text.rstrip().endswith("2 passed, 1 failed, 1 skipped")


def test_the_suite_is_run_with_the_callers_choices(tmp_path):
    argv = v.pytest_argv(tmp_path, "IMG", ("strict",), "docker", "network", None, tmp_path / "j.xml")
    assert argv[:3] == ["-m", "pytest", str(tmp_path)]
    assert {"--image=IMG", "--engine=docker", "--tier=strict"} <= set(argv)
    assert argv[-2:] == ["-k", "network"]
