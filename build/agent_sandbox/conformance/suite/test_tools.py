"""Every tool and agent CLI the image description promises answers its catalog `check` command inside every
tier's sandbox, except those the image's own labels say it does not hold."""

from __future__ import annotations

import pytest

from agent_sandbox import conformance, images
from agent_sandbox.conformance import Probe
from agent_sandbox.conformance.session import Session
from agent_sandbox.labels import LABEL_AGENTS as AGENTS_LABEL
from agent_sandbox.labels import LABEL_SKIPPED_TOOLS as SKIPPED_TOOLS_LABEL

pytestmark = [pytest.mark.area("tools"), pytest.mark.container]


def _labels(session: Session) -> dict[str, str]:
    info = session.inspect_image()
    labels: dict[str, str] = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
    return labels


def test_tool_answers_its_check(catalog_entry: str, tier: str, session: Session, probe: Probe) -> None:
    if session.description is None:
        pytest.skip(f"no images/<name>/image.toml describes {session.image} (pass --image-description)")
    labels = _labels(session)
    agents = conformance.split_label_list(labels.get(AGENTS_LABEL))
    if agents is None:
        pytest.skip(f"{session.image} has no {AGENTS_LABEL} label: not built by agent-sandbox (a test image?)")
    skipped = conformance.split_label_list(labels.get(SKIPPED_TOOLS_LABEL)) or []
    kind, name = catalog_entry.split(":", 1)
    catalog = images.load_catalog()
    if kind == "tool":
        if name in skipped:
            pytest.skip(f"the image's {SKIPPED_TOOLS_LABEL} label says it goes without {name}")
        check = catalog.tools[name].check
    else:
        if name not in agents:
            pytest.skip(f"the image's {AGENTS_LABEL} label does not list {name}")
        check = catalog.agents[name].check
    result = probe.run("timeout 60 sh -c %s", check)
    assert result.rc == 0, f"{name}: `{check}` exited {result.rc}: {(result.stderr or result.stdout).strip()[-400:]}"
