"""The conformance suite: one module per area, each test marked with the area it verifies (agent_sandbox.pytest_plugin
registers the marker, the options and the fixtures). Shipped with the package, so that an installed
`agent-sandbox verify` runs it: `pytest --pyargs agent_sandbox.conformance.suite --image REF --tier TIER`.

The tests that need a checkout (the test internet image, the egress proxy, the key gateway, the agent CLIs end to
end, `run`, the Dev Containers CLI, Leash's bootstrap) stay in tests/conformance, on the same fixtures.
"""
