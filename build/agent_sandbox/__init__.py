"""agent-sandbox: sandbox profiles for AI coding agents (four shipped tiers, or your own), each compiled into a
policy for every enforcement layer (docs/glossary.md)."""

__version__ = "0.1.0"
