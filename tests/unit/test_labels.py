"""Image labels have one source (agent_sandbox/labels.py): both backends, the run flags and the conformance suite
take the names from it, and the Debian plan and the Nix image agree on every build-independent value."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from agent_sandbox import bundle, labels, profiles
from agent_sandbox.backends import debian
from agent_sandbox.backends import debian_plan as dp
from agent_sandbox.compilers import runargs
from agent_sandbox.compilers.devcontainer import metadata_label
from agent_sandbox.images import Catalog, Image
from agent_sandbox.lock import Lock, lock_path, read_lock


def the_lock(image: Image) -> Lock:
    lock = read_lock(lock_path(image.path), image.name)
    assert lock is not None
    return lock


ROOT = Path(__file__).resolve().parents[2]
IMAGE = "agent-sandbox-devcontainer"
METADATA = [{"remoteUser": "vscode", "containerEnv": {"ANTHROPIC_API_KEY": "${localEnv:ANTHROPIC_API_KEY}"}}]


def labels_of(image: Image, catalog: Catalog, **overrides: Any) -> dict[str, str]:
    args: dict[str, Any] = {
        "tier": "strict",
        "tiers": ["strict", "trusted"],
        "metadata": METADATA,
        "agents": ["claude", "aider"],
        "skipped_tools": ["just"],
        "skipped_agents": ["cursor"],
        "backend": "debian",
        "revision": "0123abcd",
        "version": "0.1.0",
    }
    args.update(overrides)
    return labels.image_labels(image, catalog, **args)


# ------------------------------------------------------------------ names
def test_every_name_is_listed_once() -> None:
    constants = {value for name, value in vars(labels).items() if name.startswith("LABEL_")}
    assert set(labels.NAMES.values()) == constants
    assert len(set(labels.NAMES.values())) == len(labels.NAMES)
    assert set(labels.DEBIAN_ONLY) <= constants and set(labels.BACKEND_INDEPENDENT) <= constants
    assert not set(labels.DEBIAN_ONLY) & set(labels.BACKEND_INDEPENDENT)


def test_users_of_the_names_import_them() -> None:
    assert runargs.TIER_LABEL is labels.LABEL_TIER
    assert dp.LABEL_AGENTS is labels.LABEL_AGENTS and dp.LABEL_CREATED is labels.LABEL_CREATED


def test_no_label_name_is_written_twice_in_python() -> None:
    """Outside labels.py, no Python source of the package or of the conformance suite spells a label name."""
    sources = [
        *sorted((ROOT / "build" / "agent_sandbox").rglob("*.py")),
        *sorted((ROOT / "tests" / "conformance").rglob("*.py")),
    ]
    found = []
    for path in sources:
        if path.name == "labels.py" and path.parent.name == "agent_sandbox":
            continue
        text = path.read_text(encoding="utf-8")
        for name in labels.NAMES.values():
            if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    assert not found, found


# ------------------------------------------------------------------ values
def test_image_labels(image: Image, catalog: Catalog) -> None:
    assert labels_of(image, catalog) == {
        labels.LABEL_TITLE: image.name,
        labels.LABEL_DESCRIPTION: image.description,
        labels.LABEL_SOURCE: image.source,
        labels.LABEL_VERSION: "0.1.0",
        labels.LABEL_REVISION: "0123abcd",
        labels.LABEL_TIER: "strict",
        labels.LABEL_METADATA: json.dumps(METADATA, separators=(",", ":")),
        labels.LABEL_TIERS: "strict,trusted",
        labels.LABEL_POLICIES: "/etc/agent-sandbox",
        labels.LABEL_AGENTS: "claude,aider",
        labels.LABEL_SKIPPED_TOOLS: "just",
        labels.LABEL_SKIPPED_AGENTS: "cursor",
        labels.LABEL_BACKEND: "debian",
    }


def test_empty_oci_labels_are_left_out_and_ours_kept(image: Image, catalog: Catalog) -> None:
    got = labels_of(
        attrs.evolve(image, description="", source=""), catalog, revision="", agents=[], skipped_tools=[],
        skipped_agents=[],
    )  # fmt: skip
    for name in (labels.LABEL_DESCRIPTION, labels.LABEL_SOURCE, labels.LABEL_REVISION):
        assert name not in got
    for name in (labels.LABEL_AGENTS, labels.LABEL_SKIPPED_TOOLS, labels.LABEL_SKIPPED_AGENTS):
        assert got[name] == ""
    assert labels.LABEL_CREATED not in got and labels.LABEL_AGENT_VERSIONS not in got  # build-time, not here


def test_metadata_value_is_compact_json_in_the_compilers_order() -> None:
    profile = profiles.load_profile("strict")
    value = labels.metadata_value(metadata_label(profile))
    assert json.loads(value) == metadata_label(profile)
    assert ", " not in value and ": " not in value
    assert value.index('"remoteUser"') < value.index('"containerEnv"')  # not sorted: as compiled


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"backend": "docker"}, "unknown backend"),
        ({"tier": "paranoid"}, "not among the image's tiers"),
        ({"agents": ["claude", "nobody"]}, "not catalog agents: nobody"),
        ({"agents": ["claude", "cursor"]}, "both held and skipped: cursor"),
        ({"skipped_tools": ["emacs"]}, "does not list: emacs"),
    ],
)
def test_labels_that_would_lie_are_refused(
    image: Image, catalog: Catalog, change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        labels_of(image, catalog, **change)


# ------------------------------------------------------------------ the Debian backend uses them
def test_debian_plan_labels_are_labels_image_labels_plus_the_suite(image: Image, catalog: Catalog) -> None:
    tier_files = {"strict": {"leash.cedar": "x\n"}, "trusted": {"leash.cedar": "y\n"}}
    plan = dp.make_plan(
        image, catalog, agents=image.agents, tier="strict", user_name="vscode", tier_files=tier_files,
        metadata=METADATA, revision="0123abcd", version="0.1.0", lock=the_lock(image),
    )  # fmt: skip
    want = labels_of(
        image,
        catalog,
        agents=["claude", "codex", "gemini", "aider"],
        skipped_tools=[s.name for s in plan.skipped if s.kind == "tool"],
        skipped_agents=["cursor"],
    )
    assert dict(plan.labels) == {**want, labels.LABEL_BASE_NAME: f"debian:{image.debian_suite}"}
    assert plan.labels[labels.LABEL_POLICIES] == labels.POLICIES_DIR  # the Debian image now says where, too


def test_final_debian_labels_add_only_build_time_ones(image: Image, catalog: Catalog) -> None:
    plan = dp.make_plan(
        image, catalog, agents=("claude",), tier="strict", user_name="vscode",
        tier_files={"strict": {}}, metadata=METADATA, revision="r", version="0.1.0", lock=the_lock(image),
    )  # fmt: skip
    final = debian.final_labels(plan, {"claude": "1.0.0"})
    assert set(final) - set(plan.labels) == {labels.LABEL_AGENT_VERSIONS, labels.LABEL_CACHE_KEY, labels.LABEL_CREATED}
    assert set(final) - set(labels.DEBIAN_ONLY) <= set(labels.NAMES.values())


# ------------------------------------------------------------------ what Nix reads
def test_policies_json_carries_the_label_contract() -> None:
    doc = json.loads((ROOT / bundle.GENERATED).read_text(encoding="utf-8"))
    section = doc["labels"]
    assert section["names"] == dict(labels.NAMES)
    assert section["separator"] == labels.SEPARATOR
    assert section["omitWhenEmpty"] == list(labels.OMIT_WHEN_EMPTY)
    assert section["shared"] == labels.shared_labels(sorted(doc["tiers"]))
    assert sorted(section["tiers"]) == sorted(doc["tiers"]) == sorted(profiles.tier_names())
    for name, tier in doc["tiers"].items():
        assert section["tiers"][name] == labels.tier_labels(name, tier["metadata"])
        assert json.loads(section["tiers"][name][labels.LABEL_METADATA]) == tier["metadata"]


def _nix_contract() -> Any:
    """tests/nix/contract.py: what the Nix image's labels must be (tests/nix checks the flake against it)."""
    sys.path.insert(0, str(ROOT / "tests" / "nix"))
    try:
        import contract
    finally:
        sys.path.pop(0)
    return contract


@pytest.mark.parametrize(
    ("agents", "tier"), [(("claude",), "paranoid"), (("claude", "codex", "gemini", "aider"), "strict"), ((), "strict")]
)
def test_debian_plan_and_nix_contract_label_alike(
    image: Image, catalog: Catalog, agents: tuple[str, ...], tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same image, tier and agents: the same names (but Debian's own), equal backend-independent values."""
    monkeypatch.setattr(debian, "git_revision", lambda root: "0123abcd")
    deb = dict(debian.plan_build(IMAGE, agents=agents, tier=tier, env={}).labels)
    nix = _nix_contract().expected_labels(image, catalog, agents, tier, revision="dirty")
    assert set(nix) == set(deb) - set(labels.DEBIAN_ONLY)
    for name in labels.BACKEND_INDEPENDENT:
        assert nix[name] == deb[name], name
    assert nix[labels.LABEL_BACKEND] == "nix" and nix[labels.LABEL_SKIPPED_TOOLS] == ""
