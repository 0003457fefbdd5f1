"""agent-sandbox: one sandbox tier compiled into every enforcement layer for AI coding agents."""

__version__ = "0.1.0"
