"""Fixtures shared by the unit tests: the repository's own catalog and default image description."""

from __future__ import annotations

import pytest

from agent_sandbox.images import Catalog, Image, load_catalog, load_image

DEFAULT_IMAGE = "agent-sandbox-devcontainer"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def image(catalog: Catalog) -> Image:
    return load_image(DEFAULT_IMAGE, catalog)
