"""Image labels: every label name, and the label values that do not depend on how an image was built (pure).

Both backends take label names and build-independent values from here, so they label the same image alike:

- the Debian backend calls `image_labels` (backends/debian_plan.py) and adds, after its agents layer, what only
  the build knows: `org.opencontainers.image.created` and `dev.agent-sandbox.agent-versions` (and its
  `cache-key`, and `base.name` = the Debian suite it starts from);
- the Nix backend reads `label_contract` from images/compiled/policies.json (`labels`, written by
  `agent-sandbox policy compile-all`): the names, which labels are left out when empty, the per-tier values
  (`tier`, `devcontainer.metadata`) and the values every image of the document shares (`tiers`, `policies`).
  nixlib/mk-dev-container.nix adds the image's own (title, description, source, version, revision, agents,
  backend = "nix", skipped-tools/agents = "": the Nix image holds every catalog tool and agent it lists).
  It sets no `created` label and no agent versions: the image is reproducible (dockerTools stamps a fixed
  creation time), and agent versions are the pinned nixpkgs', not something the build observes.

The conformance suite and the run flags (compilers/runargs.py) read and write these names, never copies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .images import Catalog, Image, image_tools

# ------------------------------------------------------------------ names
LABEL_METADATA = "devcontainer.metadata"

LABEL_TITLE = "org.opencontainers.image.title"
LABEL_DESCRIPTION = "org.opencontainers.image.description"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_BASE_NAME = "org.opencontainers.image.base.name"

LABEL_TIER = "dev.agent-sandbox.tier"
LABEL_TIERS = "dev.agent-sandbox.tiers"
LABEL_AGENTS = "dev.agent-sandbox.agents"
LABEL_SKIPPED_TOOLS = "dev.agent-sandbox.skipped-tools"
LABEL_SKIPPED_AGENTS = "dev.agent-sandbox.skipped-agents"
LABEL_POLICIES = "dev.agent-sandbox.policies"
LABEL_BACKEND = "dev.agent-sandbox.backend"
LABEL_AGENT_VERSIONS = "dev.agent-sandbox.agent-versions"
LABEL_CACHE_KEY = "dev.agent-sandbox.cache-key"
LABEL_ROLE = "dev.agent-sandbox.role"  # service images only (the egress proxy); devcontainer images carry tiers

# Every name, by the key Nix reads it under (policies.json labels.names.<key>).
NAMES: Mapping[str, str] = {
    "metadata": LABEL_METADATA,
    "title": LABEL_TITLE,
    "description": LABEL_DESCRIPTION,
    "source": LABEL_SOURCE,
    "version": LABEL_VERSION,
    "revision": LABEL_REVISION,
    "created": LABEL_CREATED,
    "baseName": LABEL_BASE_NAME,
    "tier": LABEL_TIER,
    "tiers": LABEL_TIERS,
    "agents": LABEL_AGENTS,
    "skippedTools": LABEL_SKIPPED_TOOLS,
    "skippedAgents": LABEL_SKIPPED_AGENTS,
    "policies": LABEL_POLICIES,
    "backend": LABEL_BACKEND,
    "agentVersions": LABEL_AGENT_VERSIONS,
    "cacheKey": LABEL_CACHE_KEY,
    "role": LABEL_ROLE,
}

# The agent-sandbox labels are always set, if need be empty ("no agents" is a fact the conformance suite
# reads); an empty OCI label (an image without a description, a build outside a git checkout) is left out.
OMIT_WHEN_EMPTY = tuple(name for name in NAMES.values() if name.startswith("org.opencontainers.image."))

# Set by the Debian backend only: what its build observes (created, agent versions), its layer cache key and the
# Debian suite it starts from. The Nix image has no base image, and is reproducible: no time stamp, and its agents
# are the pinned nixpkgs' versions.
DEBIAN_ONLY = (LABEL_CREATED, LABEL_AGENT_VERSIONS, LABEL_CACHE_KEY, LABEL_BASE_NAME)
# Equal whichever backend builds the same image for the same tier and agents. The others differ by backend
# (backend, skipped-tools, skipped-agents) or by checkout (revision: the commit; Nix says "dirty" outside one).
BACKEND_INDEPENDENT = (
    LABEL_TITLE,
    LABEL_DESCRIPTION,
    LABEL_SOURCE,
    LABEL_VERSION,
    LABEL_METADATA,
    LABEL_TIER,
    LABEL_TIERS,
    LABEL_AGENTS,
    LABEL_POLICIES,
)

POLICIES_DIR = "/etc/agent-sandbox"  # every shipped tier's files: <POLICIES_DIR>/<tier>/
BACKENDS = ("debian", "nix")
SEPARATOR = ","  # list-valued labels: names joined by commas, no spaces


# ------------------------------------------------------------------ values
def metadata_value(metadata: Any) -> str:
    """The devcontainer.metadata label: the tier's metadata array as compact JSON, in the compiler's key order."""
    return json.dumps(metadata, separators=(",", ":"))


def join(names: Sequence[str]) -> str:
    return SEPARATOR.join(names)


def tier_labels(tier: str, metadata: Any) -> dict[str, str]:
    """What an image built for `tier` says about it, whatever holds it."""
    return {LABEL_TIER: tier, LABEL_METADATA: metadata_value(metadata)}


def shared_labels(tiers: Sequence[str]) -> dict[str, str]:
    """What every image shipping the files of `tiers` under POLICIES_DIR says, whichever tier it is for."""
    return {LABEL_TIERS: join(tiers), LABEL_POLICIES: POLICIES_DIR}


def without_empty(labels: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in labels.items() if value != "" or name not in OMIT_WHEN_EMPTY}


def image_labels(
    image: Image,
    catalog: Catalog,
    *,
    tier: str,
    tiers: Sequence[str],
    metadata: Any,
    agents: Sequence[str],
    skipped_tools: Sequence[str],
    skipped_agents: Sequence[str],
    backend: str,
    revision: str,
    version: str,
) -> dict[str, str]:
    """An image's labels, except what only its build knows (created, agent versions; see the module docstring).

    `tiers`: every tier whose files the image holds; `metadata`: `tier`'s devcontainer metadata array;
    `agents`: the agents the image really holds; `skipped_*`: what its description asks for and it goes without.
    Raises ValueError when the labels would claim something the image or the catalog contradicts.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    if tier not in tiers:
        raise ValueError(f"tier {tier!r} is not among the image's tiers ({join(tiers)})")
    unknown = [name for name in [*agents, *skipped_agents] if name not in catalog.agents]
    if unknown:
        raise ValueError(f"not catalog agents: {join(unknown)}")
    if set(agents) & set(skipped_agents):
        raise ValueError(f"agents both held and skipped: {join(sorted(set(agents) & set(skipped_agents)))}")
    held_tools = {tool.name for tool in image_tools(image, catalog)}
    foreign = [name for name in skipped_tools if name not in held_tools]
    if foreign:
        raise ValueError(f"skipped tools the image {image.name} does not list: {join(foreign)}")
    labels = {
        LABEL_TITLE: image.name,
        LABEL_DESCRIPTION: image.description,
        LABEL_SOURCE: image.source,
        LABEL_VERSION: version,
        LABEL_REVISION: revision,
        **tier_labels(tier, metadata),
        **shared_labels(tiers),
        LABEL_AGENTS: join(agents),
        LABEL_SKIPPED_TOOLS: join(skipped_tools),
        LABEL_SKIPPED_AGENTS: join(skipped_agents),
        LABEL_BACKEND: backend,
    }
    return without_empty(labels)


def service_labels(image: Image, *, backend: str, revision: str, version: str) -> dict[str, str]:
    """A service image's labels (the egress proxy): what it is, and no tier, agent or devcontainer label."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    return without_empty(
        {
            LABEL_TITLE: image.name,
            LABEL_DESCRIPTION: image.description,
            LABEL_SOURCE: image.source,
            LABEL_VERSION: version,
            LABEL_REVISION: revision,
            LABEL_ROLE: image.role,
            LABEL_BACKEND: backend,
        }
    )


def label_contract(tier_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The `labels` section of images/compiled/policies.json, for Nix: {tier: metadata array} -> the names, the
    list separator, the labels left out when empty, each tier's labels and the labels shared by every image
    holding the document's tiers."""
    tiers = sorted(tier_metadata)
    return {
        "names": dict(NAMES),
        "separator": SEPARATOR,
        "omitWhenEmpty": list(OMIT_WHEN_EMPTY),
        "shared": shared_labels(tiers),
        "tiers": {name: tier_labels(name, tier_metadata[name]) for name in tiers},
    }
