"""The GitHub Actions workflows are clean for zizmor and actionlint, hold the project's pinning and permission
rules, and the checks do fail on a workflow that breaks them (checked, not promised: a tool that quietly
audits nothing would pass every workflow).

zizmor runs offline (`--offline`: no GitHub API, so it cannot check that a SHA is the tag its comment names;
docs/ci.md says how the SHAs were found) with the `pedantic` persona, a superset of the default one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
DOCS = ROOT / "docs" / "ci.md"

# owner/repo[/path]@<40 hex> # vX[.Y[.Z]]: a full commit SHA, the release tag it is in a comment
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40}) # (?P<tag>v\d+(?:\.\d+)*)$")

# What each job may ask of the GITHUB_TOKEN: nothing at the top of any workflow, and write access only
# where a job publishes (packages, signatures) or opens the flake update's pull request.
JOB_PERMISSIONS = {
    ("ci.yml", "ci-run"): {"contents": "read"},
    ("ci.yml", "nix-eval"): {"contents": "read"},
    ("publish-images.yml", "build-test-push"): {"contents": "read", "packages": "write"},
    ("publish-images.yml", "manifest"): {"contents": "read", "packages": "write", "id-token": "write"},
    ("flake-update.yml", "update"): {"contents": "read"},
    ("flake-update.yml", "verify"): {"contents": "read"},
    ("flake-update.yml", "pull-request"): {"contents": "write", "pull-requests": "write"},
    ("lock-update.yml", "update"): {"contents": "read"},
    ("lock-update.yml", "verify"): {"contents": "read"},
    ("lock-update.yml", "pull-request"): {"contents": "write", "pull-requests": "write"},
}


def tool(name: str) -> str:
    """The venv's own copy first (pytest may run without the venv on PATH), then PATH."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail(f"{name} is not installed: it is in the [test] extra (pip install -e '.[test]', or make venv)")
    return found


def zizmor(target: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [tool("zizmor"), "--offline", "--persona=pedantic", "--strict-collection", "--format=json", "--no-progress",
         str(target)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    # 0: no findings; 10-14: findings (by highest severity); anything else is the tool failing
    assert proc.returncode == 0 or 10 <= proc.returncode <= 14, proc.stderr[-3000:]
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (findings == []), (proc.returncode, findings)
    return findings


def actionlint(files: list[Path]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [tool("actionlint"), "-no-color", "-format", "{{json .}}", *map(str, files)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    # 0: no errors; 1: errors found; 2 and 3: bad invocation or a fatal error
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    errors: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    assert (proc.returncode == 0) == (errors == []), (proc.returncode, errors)
    return errors


def primary(finding: dict[str, Any]) -> tuple[str, int]:
    """File and (1-based) line of a zizmor finding's primary location."""
    locations = finding["locations"]
    where = next((loc for loc in locations if loc["symbolic"]["kind"] == "Primary"), locations[0])
    key = where["symbolic"]["key"]
    path = "/".join(map(str, key["Local"].values())) if "Local" in key else json.dumps(key)
    return path, where["concrete"]["location"]["start_point"]["row"] + 1


def describe_zizmor(findings: list[dict[str, Any]]) -> str:
    return "\n".join("{}:{}: ".format(*primary(f)) + f"{f['ident']}: {f['desc']}" for f in findings)


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def uses_lines(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:-\s+)?uses:\s*(.+)$", path.read_text(), re.MULTILINE)]


# ------------------------------------------------------------------ the tools
def test_there_are_workflows() -> None:
    assert [p.name for p in FILES] == ["ci.yml", "flake-update.yml", "lock-update.yml", "publish-images.yml"]


def test_zizmor_finds_nothing() -> None:
    findings = zizmor(WORKFLOWS)
    assert findings == [], describe_zizmor(findings)


def test_actionlint_finds_nothing() -> None:
    errors = actionlint(FILES)
    assert errors == [], "\n".join(f"{e['filepath']}:{e['line']}: {e['message']} [{e['kind']}]" for e in errors)


# ------------------------------------------------------------------ the tools can fail
BAD_STEP = """\
      - name: Greet the pull request
        run: echo "${{ github.event.pull_request.title }}"
"""


@pytest.fixture
def bad_copy(tmp_path: Path) -> Path:
    """ci.yml with its checkout unpinned and a step that expands an attacker's text inside a script."""
    dest = tmp_path / ".github" / "workflows"
    dest.mkdir(parents=True)
    text = (WORKFLOWS / "ci.yml").read_text()
    pinned = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"
    assert text.count(pinned) == 2
    text = text.replace(pinned, "actions/checkout@v4", 1)
    anchor = "      - name: make test\n"
    assert text.count(anchor) == 1
    (dest / "ci.yml").write_text(text.replace(anchor, BAD_STEP + anchor))
    return dest


def test_zizmor_reports_an_unpinned_action_and_a_template_injection(bad_copy: Path) -> None:
    findings = zizmor(bad_copy)
    found = {(f["ident"], primary(f)[1]) for f in findings}
    lines = (bad_copy / "ci.yml").read_text().splitlines()
    unpinned = next(i for i, line in enumerate(lines, 1) if "actions/checkout@v4" in line)
    injected = next(i for i, line in enumerate(lines, 1) if "github.event.pull_request.title" in line)
    assert ("unpinned-uses", unpinned) in found, describe_zizmor(findings)
    assert ("template-injection", injected) in found, describe_zizmor(findings)
    assert {f["ident"] for f in findings} == {"unpinned-uses", "template-injection"}, describe_zizmor(findings)


def test_actionlint_reports_the_template_injection(bad_copy: Path) -> None:
    errors = actionlint([bad_copy / "ci.yml"])
    assert any("github.event.pull_request.title" in e["message"] and e["kind"] == "expression" for e in errors), errors


# ------------------------------------------------------------------ pins
def test_every_action_is_pinned_to_a_commit_with_its_tag() -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    for path in FILES:
        for ref in uses_lines(path):
            match = PINNED.match(ref)
            assert match, f"{path.name}: `uses: {ref}` is not `owner/repo@<40-hex SHA> # vX.Y.Z`"
            seen.setdefault(match["action"], set()).add((match["sha"], match["tag"]))
    # one version of each action across the workflows
    assert {a: len(v) for a, v in seen.items() if len(v) > 1} == {}


def test_docs_list_every_pin() -> None:
    """docs/ci.md's table of pins is the workflows' pins (action, tag, SHA), no more, no less."""
    pins = set()
    for path in FILES:
        for ref in uses_lines(path):
            match = PINNED.match(ref)
            assert match
            pins.add((match["action"], match["tag"], match["sha"]))
    rows = re.findall(r"^\| `([^`]+)` \| `(v[\d.]+)` \| `([0-9a-f]{40})` \|", DOCS.read_text(), re.MULTILINE)
    assert set(rows) == pins


# ------------------------------------------------------------------ permissions and credentials
def test_permissions_are_least_privilege() -> None:
    for path in FILES:
        workflow = load(path)
        assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
        for name, job in workflow["jobs"].items():
            assert (path.name, name) in JOB_PERMISSIONS, f"{path.name}: job {name} is not in JOB_PERMISSIONS"
            assert job.get("permissions") == JOB_PERMISSIONS[path.name, name], f"{path.name}: job {name}"
    jobs = {(p.name, n) for p in FILES for n in load(p)["jobs"]}
    assert jobs == set(JOB_PERMISSIONS)


def test_checkouts_keep_no_credentials() -> None:
    for path in FILES:
        for name, job in load(path)["jobs"].items():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {name}"


def test_no_expression_inside_a_script() -> None:
    """Values reach `run:` scripts through `env:` only (zizmor's pedantic persona checks this too)."""
    for path in FILES:
        for name, job in load(path)["jobs"].items():
            for step in job["steps"]:
                assert "${{" not in step.get("run", ""), f"{path.name}: {name}: {step.get('name', step['run'])}"


def test_no_deprecated_cache_action() -> None:
    for path in FILES:
        assert "magic-nix-cache" not in "\n".join(uses_lines(path)), path.name


# ------------------------------------------------------------------ the flake update is verified like a publish
def test_flake_update_verifies_what_publish_tests() -> None:
    """flake-update.yml's verify job runs publish-images.yml's build-test-push steps, up to its push, unchanged
    (after putting the updated flake.lock in place)."""

    def comparable(step: dict[str, Any]) -> dict[str, Any]:
        return {k: step.get(k) for k in ("name", "uses", "with", "run", "env")}

    publish = load(WORKFLOWS / "publish-images.yml")["jobs"]["build-test-push"]
    verify = load(WORKFLOWS / "flake-update.yml")["jobs"]["verify"]
    push = next(i for i, step in enumerate(publish["steps"]) if step.get("name", "").startswith("Push"))
    before_push = [comparable(s) for s in publish["steps"][:push]]
    lock = next(i for i, step in enumerate(verify["steps"]) if step.get("name") == "The updated flake.lock")
    assert 'cp "$RUNNER_TEMP/flake-update/flake.lock" flake.lock' in verify["steps"][lock]["run"]
    assert verify["steps"][lock - 1]["uses"].startswith("actions/download-artifact@")
    assert [comparable(s) for s in verify["steps"][: lock - 1] + verify["steps"][lock + 1 :]] == before_push
    assert verify["strategy"] == publish["strategy"] and verify["runs-on"] == publish["runs-on"]
    assert verify["env"]["SYSTEM"] == publish["env"]["SYSTEM"]
    defaults = [load(WORKFLOWS / name).get("defaults") for name in ("publish-images.yml", "flake-update.yml")]
    assert defaults[0] == defaults[1] == {"run": {"shell": "bash"}}  # the same shell: bash -eo pipefail
    # and the pull request waits for it
    pull_request = load(WORKFLOWS / "flake-update.yml")["jobs"]["pull-request"]
    assert set(pull_request["needs"]) == {"update", "verify"}


# ------------------------------------------------------------------ the lock update is verified like CI
def test_lock_update_verifies_what_ci_runs() -> None:
    """lock-update.yml's verify job runs ci.yml's ci-run steps (.ci/run) unchanged, after putting the updated
    locks in place; the pull request waits for it and adds only the locks."""

    def comparable(step: dict[str, Any]) -> dict[str, Any]:
        return {k: step.get(k) for k in ("name", "uses", "with", "run", "env")}

    ci = load(WORKFLOWS / "ci.yml")["jobs"]["ci-run"]
    workflow = load(WORKFLOWS / "lock-update.yml")
    verify = workflow["jobs"]["verify"]
    locks = next(i for i, step in enumerate(verify["steps"]) if step.get("name") == "The updated locks")
    assert 'tar -xf "$RUNNER_TEMP/lock-update/locks.tar"' in verify["steps"][locks]["run"]
    assert verify["steps"][locks - 1]["uses"].startswith("actions/download-artifact@")
    assert [comparable(s) for s in verify["steps"][: locks - 1] + verify["steps"][locks + 1 :]] == [
        comparable(s) for s in ci["steps"]
    ]
    assert verify["runs-on"] == ci["runs-on"]
    assert 'lock "$dir" --update' in next(
        s["run"] for s in workflow["jobs"]["update"]["steps"] if s.get("id") == "update"
    )
    pull_request = workflow["jobs"]["pull-request"]
    assert set(pull_request["needs"]) == {"update", "verify"}
    create = next(s for s in pull_request["steps"] if "create-pull-request" in str(s.get("uses")))
    assert all("lock.toml" in p or "package-locks" in p for p in create["with"]["add-paths"].split())
