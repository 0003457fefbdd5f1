"""The conformance suite's pytest plugin, registered through the `pytest11` entry point (as pytest-testinfra ships
its own), so that the suite runs wherever the package is installed:

    pytest --pyargs agent_sandbox.conformance.suite --image REF --tier strict --engine docker

Options (each also read from the environment, for plain `pytest` runs from a checkout):
  --image REF            AGENT_SANDBOX_IMAGE    image to verify (default localhost/agent-sandbox-devcontainer:latest)
  --tier NAME            AGENT_SANDBOX_TIERS    tiers to verify; repeat the option or comma-separate (default: all four)
  --engine podman|docker AGENT_SANDBOX_ENGINE   container engine (default: podman, else docker if its daemon answers)
  --image-description X  AGENT_SANDBOX_IMAGE_DESCRIPTION  images/<X>/image.toml describing the image (default: the
                         image.toml whose name matches the reference's repository name, if any)

A conformance test carries `@pytest.mark.area(NAME)`: what it verifies, the line of `agent-sandbox verify`'s report
it counts towards (written into the JUnit report as the properties `area` and `tier`). Only such tests get `tier`
(every selected tier) and `catalog_entry` (every tool and agent of the image description) parametrized.

Loaded into every pytest run where the package is installed, the plugin costs nothing there: it imports only pytest
at load time (the suite's machinery, testinfra and the engine layer are imported by the fixtures, when a test asks
for them), adds no required option, and its hooks touch only tests marked `area`. The fixtures: `session` (the
engine, the image, every container started; agent_sandbox.conformance.session), `outside` (our own HTTP server on
ordinary networks), and per tier `profile`, `expected`, `sandbox`, `probe` and `python3` (skips a probe that needs
python3 in an image without it). There is no `host` fixture: testinfra's plugin has one; ours is `probe.host`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .conformance.expectations import Expectations
    from .conformance.probe import Probe
    from .conformance.session import OutsideServer, Session
    from .model import Profile
    from .runtime import Sandbox

DEFAULT_IMAGE = "localhost/agent-sandbox-devcontainer:latest"
AREA = "area"


# ---------------------------------------------------------------- options and markers
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent-sandbox conformance")
    group.addoption("--image", default=None, help=f"image reference to verify (default {DEFAULT_IMAGE})")
    group.addoption("--tier", action="append", default=None, help="tier to verify (repeatable; default all)")
    group.addoption("--engine", default=None, help="podman or docker (default: detect)")
    group.addoption("--image-description", default=None, help="images/<NAME>/image.toml describing the image")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{AREA}(name): a conformance test, counted towards `name` in verify's report")
    config.addinivalue_line("markers", "container: needs a container engine (podman or docker) and a built image")


def _option(config: pytest.Config, name: str, env: str) -> str | None:
    value = config.getoption(name, default=None)
    return value if value else os.environ.get(env) or None


def image_ref(config: pytest.Config) -> str:
    return _option(config, "--image", "AGENT_SANDBOX_IMAGE") or DEFAULT_IMAGE


def image_given(config: pytest.Config) -> bool:
    return bool(_option(config, "--image", "AGENT_SANDBOX_IMAGE"))


def selected_tiers(config: pytest.Config) -> list[str]:
    raw = config.getoption("--tier", default=None) or [os.environ.get("AGENT_SANDBOX_TIERS", "")]
    names = [t.strip() for item in raw for t in item.split(",") if t.strip()]
    if names:
        return names
    from .profiles import tier_names

    return tier_names()


def description_name(config: pytest.Config) -> str | None:
    return _option(config, "--image-description", "AGENT_SANDBOX_IMAGE_DESCRIPTION")


def area_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(AREA)
    return str(marker.args[0]) if marker is not None else None


# ---------------------------------------------------------------- parametrization and the report's properties
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker(AREA) is None:
        return
    config = metafunc.config
    if "catalog_entry" in metafunc.fixturenames:
        from .conformance.session import catalog_entries, describe

        entries = catalog_entries(describe(image_ref(config), description_name(config))) or ["none"]
        metafunc.parametrize("catalog_entry", entries, ids=[e.split(":")[-1] for e in entries])
    if "tier" in metafunc.fixturenames:
        metafunc.parametrize("tier", selected_tiers(config))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each conformance test says in the JUnit report what it verifies and for which tier ("" for none)."""
    for item in items:
        area = area_of(item)
        if area is not None:
            callspec = getattr(item, "callspec", None)
            tier = callspec.params.get("tier", "") if callspec is not None else ""
            item.user_properties += [("area", area), ("tier", str(tier))]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def session(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    from .conformance.session import open_session

    state = open_session(
        _option(pytestconfig, "--engine", "AGENT_SANDBOX_ENGINE"),
        image_ref(pytestconfig),
        named=image_given(pytestconfig),
        description=description_name(pytestconfig),
        base=tmp_path_factory.mktemp("conformance"),
    )
    try:
        yield state
    finally:
        state.close()


@pytest.fixture(scope="session")
def outside(session: Session) -> Iterator[OutsideServer]:
    from .conformance.session import outside_server

    yield from outside_server(session)


@pytest.fixture
def profile(tier: str) -> Profile:
    from .profiles import load_profile

    return load_profile(tier)


@pytest.fixture
def expected(profile: Profile, session: Session) -> Expectations:
    return session.expect(profile)


@pytest.fixture
def sandbox(session: Session, tier: str) -> Sandbox:
    return session.sandbox(tier)


@pytest.fixture
def probe(session: Session, sandbox: Sandbox) -> Probe:
    return session.probe(sandbox)


@pytest.fixture
def python3(session: Session, probe: Probe) -> None:
    """The probes that fork, allocate or speak HTTP run python3 inside the image (agentTools ships it)."""
    session.require_python3(probe.host)
