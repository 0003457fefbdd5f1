"""`agent-sandbox verify IMAGE --tier TIER`: run the conformance suite against an image and print what it proved."""

from __future__ import annotations

import importlib.util
import shlex
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import attrs
import click
from plumbum import local

from .. import conformance, profiles
from ..engine import ENGINES, detect_engine
from ..errors import (
    ChecksFailed,
    CommandFailed,
    EnvironmentProblem,
    InputError,
    SandboxError,
)

# The suite ships in the package; each test's area (its `area` marker) and tier come back as JUnit properties
# (agent_sandbox.pytest_plugin).
SUITE = "agent_sandbox.conformance.suite"


@attrs.frozen
class Outcome:
    area: str
    tier: str  # "" when the test is not about one tier
    name: str
    status: str  # passed | failed | skipped
    message: str


def suite_dir() -> Path:
    """Where the installed conformance suite is (a checkout's build/agent_sandbox/..., or site-packages)."""
    spec = importlib.util.find_spec(SUITE)
    if spec is None or spec.origin is None:
        raise EnvironmentProblem(f"the conformance suite ({SUITE}) is not installed: reinstall agent-sandbox")
    return Path(spec.origin).parent


def pytest_argv(
    suite: Path,
    ini: Path,
    image: str,
    tiers: tuple[str, ...],
    engine: str,
    keyword: str | None,
    description: str | None,
    junit: Path,
) -> list[str]:
    """pytest's arguments for the shipped suite. Its own settings (`ini`, an empty file) and no conftest.py above
    the suite's directory: an install inside someone's project must not pick up that project's pytest settings.
    pytest runs in verify's process, where agent_sandbox is imported already, too late for pytest to rewrite its
    asserts (the suite's modules, imported later, are rewritten): that warning is silenced."""
    argv = [
        "--pyargs",
        SUITE,
        "-c",
        str(ini),
        f"--rootdir={suite}",
        f"--confcutdir={suite}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        f"--junitxml={junit}",
        f"--image={image}",
        f"--engine={engine}",
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
    ]
    argv += [f"--tier={t}" for t in tiers]
    if description:
        argv.append(f"--image-description={description}")
    if keyword:
        argv += ["-k", keyword]
    return argv


def read_junit(path: Path) -> list[Outcome]:
    """The outcome of every test, in the order they ran; area and tier are the test's `area` and `tier` properties
    (a test without an area is counted under its module's name)."""
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "failed", child.get("message", "")
            elif child.tag == "skipped":
                status, message = "skipped", child.get("message", "")
        area = props.get("area") or case.get("classname", "").split(".")[-1]
        outcomes.append(Outcome(area, props.get("tier", ""), case.get("name", ""), status, message))
    return outcomes


def _mark(counts: Counter[str]) -> str:
    """The report's mark for a group of outcomes: a group where nothing passed verified nothing."""
    return "FAIL" if counts["failed"] else ("ok  " if counts["passed"] else "----")


def _area_line(area: str, counts: Counter[str], results: list[Outcome]) -> str:
    if counts["failed"] or counts["passed"]:
        return f"{_mark(counts)}    {area}: {_counts(counts)}"
    reason = next((o.message.splitlines()[0] for o in results if o.area == area and o.message), "")
    return f"{_mark(counts)}    {area}: NOT verified ({_counts(counts)}{': ' + reason if reason else ''})"[:300]


def _verdict(counts: Counter[str], unverified_areas: list[str]) -> str:
    if counts["failed"]:
        return f"FAILED ({_counts(counts)})"
    if not counts["passed"]:
        return f"NOT verified ({_counts(counts)})" if counts else "not run"
    if unverified_areas:
        return f"partly verified ({_counts(counts)}); NOT verified: {', '.join(unverified_areas)}"
    return f"verified ({_counts(counts)})"


def _areas(results: list[Outcome]) -> dict[str, Counter[str]]:
    areas: dict[str, Counter[str]] = defaultdict(Counter)
    for o in results:
        areas[o.area][o.status] += 1
    return areas


def render(image: str, engine: str, tiers: tuple[str, ...], outcomes: list[Outcome], uid: int, gid: int) -> str:
    lines = [f"agent-sandbox verify: {image} on {engine}"]
    by_tier: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_tier[outcome.tier].append(outcome)
    for tier in tiers:
        exp = conformance.expect(profiles.load_profile(tier), uid=uid, gid=gid)
        results = by_tier.get(tier, [])
        areas = _areas(results)
        ordered = list(areas)  # in the order the suite ran them
        unverified = [area for area in ordered if not (areas[area]["passed"] or areas[area]["failed"])]
        lines.append(f"\n{tier}: {_verdict(Counter(o.status for o in results), unverified)}")
        lines += [f"  claims  {claim}" for claim in conformance.describe(exp)]
        lines += [f"  {_area_line(area, areas[area], results)}" for area in ordered]
    rest = by_tier.get("", [])
    if rest:
        lines.append("")
        lines += [_area_line(area, counts, rest) for area, counts in _areas(rest).items()]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines.append("\nfailures:")
        lines += [f"  {o.name}: {o.message.splitlines()[0] if o.message else ''}"[:300] for o in failed]
    total = Counter(o.status for o in outcomes)
    lines.append(f"\n{_counts(total)}")
    return "\n".join(lines) + "\n"


def _counts(counts: Counter[str]) -> str:
    parts = [f"{counts[k]} {k}" for k in ("passed", "failed", "skipped") if counts[k]]
    return ", ".join(parts) or "no tests"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def outcome_error(
    code: int, outcomes: list[Outcome], tiers: tuple[str, ...], keyword: str | None
) -> SandboxError | None:
    """What `verify` exits with, from pytest's exit status and the outcomes: None when every selected tier was
    verified. A tier none of whose checks passed (all skipped) is not verified, and neither is the run."""
    if code == 5 or not outcomes:
        if keyword:
            return InputError(f"no conformance test matched (-k {keyword!r})")
        return CommandFailed("the conformance suite collected no test")
    failed = [o for o in outcomes if o.status == "failed"]
    if code == 1:
        if not failed:
            return ChecksFailed("the conformance suite failed (pytest exit status 1); see above")
        failing = list(dict.fromkeys(o.tier for o in failed if o.tier))
        where = f" for tier{'s' if len(failing) > 1 else ''} {', '.join(failing)}" if failing else ""
        return ChecksFailed(f"{_plural(len(failed), 'conformance check')} failed{where}; see above")
    if code != 0:
        return CommandFailed(f"the conformance suite stopped abnormally (pytest exit status {code})")
    ran = {o.tier for o in outcomes}
    unverified = [
        t
        for t in tiers
        if not any(o.tier == t and o.status == "passed" for o in outcomes) and (t in ran or keyword is None)
    ]
    if unverified:
        return ChecksFailed(
            f"nothing was verified for tier{'s' if len(unverified) > 1 else ''} "
            f"{', '.join(unverified)}: no check passed (all skipped); see above"
        )
    return None


@click.command()
@click.argument("image")
@click.option(
    "--tier", "tiers", multiple=True, metavar="TIER", help="Tier to verify (repeatable; default: all shipped tiers)."
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default=None,
    help="Container engine (default: podman, else docker if its daemon answers).",
)
@click.option("-k", "keyword", default=None, metavar="EXPR", help="Only tests matching this pytest -k expression.")
@click.option(
    "--image-description",
    default=None,
    metavar="NAME",
    help="images/NAME/image.toml describing IMAGE (default: matched by the image's name).",
)
def verify(
    image: str, tiers: tuple[str, ...], engine: str | None, keyword: str | None, image_description: str | None
) -> None:
    """Start IMAGE under each TIER's compiled run flags and prove it is what the tier claims.

    Runs the conformance suite shipped with agent-sandbox (pytest --pyargs agent_sandbox.conformance.suite,
    pytest-testinfra) and prints each tier's claims with what was verified, area by area. Exits 0 when everything
    passed, 1 when a check failed or a tier had no check pass (all skipped).
    """
    tiers = tiers or tuple(profiles.tier_names())
    for tier in tiers:
        profiles.load_profile(tier)  # an unknown tier fails here, with exit status 2
    eng = detect_engine(engine)
    engine = eng.name
    if not eng.image_exists(image):
        raise EnvironmentProblem(f"image {image} is not in {engine}'s storage: build or load it first")
    suite = suite_dir()
    uid = gid = 1000
    if image_description:
        from ..images import load_image

        desc = load_image(image_description)
        uid, gid = desc.uid, desc.gid
    with tempfile.TemporaryDirectory(prefix="agent-sandbox-verify-") as tmp:
        junit, ini = Path(tmp) / "junit.xml", Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        argv = pytest_argv(suite, ini, image, tiers, engine, keyword, image_description, junit)
        click.echo(f"running the conformance suite: {shlex.join(['pytest', *argv])}", err=True)
        # In this process: its sys.path is the one that found agent_sandbox (a Nix wrapper's, a venv's), which a
        # new `python -m pytest` would not have. pytest streams its progress (paths relative to the suite's
        # directory); the summary below comes from the JUnit file.
        import pytest

        with local.cwd(suite):
            code = int(pytest.main(argv))
        if not junit.exists():
            raise CommandFailed(f"the conformance suite did not run (pytest exit status {code})")
        outcomes = read_junit(junit)
    click.echo(render(image, engine, tiers, outcomes, uid, gid), nl=False)
    error = outcome_error(code, outcomes, tiers, keyword)
    if error is not None:
        raise error
