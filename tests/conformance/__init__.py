"""The conformance suite: proves a running sandbox is what its tier claims (see docs/conformance.md)."""
