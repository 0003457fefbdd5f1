"""The build's progress on stderr: a spinner line per running phase, a summary line per phase (rich).

The backend sends plain events (backends/events.py); this is the only place that draws them.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..backends.events import BuildEvent, Note, PhaseDone, PhaseOutput, PhaseStarted


class BuildProgress:
    """One spinner line per running phase (last output line, elapsed time), one summary line per phase.
    Use it as a context manager: the spinner stops however the build ends."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[phase]:<9}[/]"),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.what = ""

    def __call__(self, event: BuildEvent) -> None:
        if isinstance(event, PhaseStarted):
            self.start(event.phase, event.title)
        elif isinstance(event, PhaseOutput):
            self.line(event.text)
        elif isinstance(event, PhaseDone):
            self.done(event.phase, event.summary)
        elif isinstance(event, Note):
            self.console.print(event.text, markup=False, soft_wrap=True)

    def start(self, phase: str, what: str) -> None:
        self.what = what
        self.progress.start()
        self.task = self.progress.add_task(what, phase=phase, total=None)

    def line(self, text: str) -> None:
        if self.task is not None:
            width = max(20, self.console.width - 40)
            shown = text.strip().replace("\r", "")
            self.progress.update(self.task, description=f"{self.what}: {shown[: width - len(self.what)]}")

    def done(self, phase: str, summary: str) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
            self.progress.stop()
        self.console.print(f"[green]✓[/] [bold]{phase:<9}[/] {summary}", soft_wrap=True)

    def close(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.progress.stop()

    def __enter__(self) -> BuildProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
