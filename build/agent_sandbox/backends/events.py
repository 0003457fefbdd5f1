"""What a build reports while it runs: plain values sent to a callback. The CLI shows them (cli/progress.py);
a backend knows nothing of terminals."""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.frozen
class PhaseStarted:
    """A phase (a layer) is being built; `title` says what it does."""

    phase: str
    title: str


@attrs.frozen
class PhaseOutput:
    """One line of output of the running phase's commands."""

    text: str


@attrs.frozen
class PhaseDone:
    """A phase ended: built or found in the cache, as `summary` says."""

    phase: str
    summary: str


@attrs.frozen
class Note:
    """Text for the user as it is (the plan a dry run prints)."""

    text: str


BuildEvent = PhaseStarted | PhaseOutput | PhaseDone | Note
OnEvent = Callable[[BuildEvent], None]


def ignore(event: BuildEvent) -> None:
    """An OnEvent for callers that show nothing."""


@attrs.frozen
class Reporter:
    """What the phases call (`on_line=report.line` for a command's output): each call sends one event."""

    emit: OnEvent = ignore

    def start(self, phase: str, title: str) -> None:
        self.emit(PhaseStarted(phase, title))

    def line(self, text: str) -> None:
        self.emit(PhaseOutput(text))

    def done(self, phase: str, summary: str) -> None:
        self.emit(PhaseDone(phase, summary))

    def info(self, text: str) -> None:
        self.emit(Note(text))
