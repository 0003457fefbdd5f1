"""SIGTERM unwinds like Ctrl-C: what a command started (containers, networks, temp dirs) is cleaned up on the way.

A CI timeout or `kill` sends SIGTERM; Python's default would end the process at once and leave containers behind.
Inside `sigterm_unwinds()`, SIGTERM raises `Terminated` (a BaseException, like KeyboardInterrupt, so that no
`except Exception` on the way stops the unwinding); every `finally` runs, then the caller turns it into an error.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM arrived (see the module docstring); the CLI turns it into an exit status once all is cleaned up."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so working containers and temp dirs are removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
