"""The conformance tests that need this checkout: the egress proxy, the key gateway, the agent CLIs end to end,
`run`, the Dev Containers CLI and Leash's bootstrap (against the test internet, tests/images/internet), and the
pure tests of the check functions and of verify's report.

The suite that verifies an image per tier is shipped with the package (agent_sandbox/conformance/suite); its
options (--image, --tier, --engine, --image-description, or AGENT_SANDBOX_*) and fixtures (`session`, `outside`,
`profile`, `expected`, `sandbox`, `probe`, `python3`) come from the package's pytest plugin
(agent_sandbox.pytest_plugin, loaded through its `pytest11` entry point) and serve the tests here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sandbox.conformance.session import Session

from . import testnet

# Tests that need no container (pure checks) live in these modules.
PURE_MODULES = {"test_checks.py", "test_verify_report.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name not in PURE_MODULES and item.path.parent == Path(__file__).parent:
            item.add_marker(pytest.mark.container)


@pytest.fixture(scope="session")
def internet(session: Session) -> Iterator[testnet.Internet]:
    if not session.engine.image_exists(testnet.IMAGE):
        pytest.fail(
            f"{testnet.IMAGE} is not in {session.engine.name}'s storage: build it "
            "(agent-sandbox build tests/images/internet --backend debian)",
            pytrace=False,
        )
    yield from testnet.start(session.engine, session.base)
