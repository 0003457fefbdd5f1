"""The build's progress: the backend sends plain events (backends/events.py), the CLI draws them
(cli/progress.py), and no backend draws anything."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from agent_sandbox.backends.events import Note, PhaseDone, PhaseOutput, PhaseStarted
from agent_sandbox.cli.progress import BuildProgress


def console() -> Console:
    return Console(file=io.StringIO(), width=100, highlight=False, color_system=None)


def shown(show: BuildProgress) -> str:
    return show.console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "event, text",
    [
        pytest.param(
            PhaseDone("base", "cache hit localhost/c:base-1"),
            "✓ base      cache hit localhost/c:base-1\n",
            id="a-phase-done-is-one-summary-line",
        ),
        pytest.param(
            Note("[bold]not markup[/] 1. base\n   two lines"),
            "[bold]not markup[/] 1. base\n   two lines\n",
            id="a-note-is-printed-as-it-is",
        ),
        pytest.param(PhaseOutput("Get:1 http://deb.debian.org"), "", id="output-outside-a-phase-is-dropped"),
    ],
)
def test_events_as_the_user_sees_them(event: object, text: str) -> None:
    show = BuildProgress(console())
    show(event)  # type: ignore[arg-type]
    assert shown(show) == text


def test_a_running_phase_is_a_transient_spinner_line_then_its_summary() -> None:
    show = BuildProgress(console())
    show(PhaseStarted("agents", "agent CLIs from npm/PyPI"))
    assert show.progress.live.is_started
    show(PhaseOutput("added 3 packages\r"))
    assert show.progress.tasks[0].description == "agent CLIs from npm/PyPI: added 3 packages"
    show(PhaseDone("agents", "built x in 1.0 s (1.0 MB)"))
    assert not show.progress.live.is_started
    assert shown(show).endswith("✓ agents    built x in 1.0 s (1.0 MB)\n")


def test_the_spinner_stops_however_the_build_ends() -> None:
    with pytest.raises(KeyboardInterrupt):
        with BuildProgress(console()) as show:
            show(PhaseStarted("base", "mmdebstrap rootfs + import"))
            raise KeyboardInterrupt
    assert not show.progress.live.is_started and not show.progress.tasks


def test_no_backend_imports_rich() -> None:
    code = (
        "import sys, pkgutil, importlib, agent_sandbox.backends as b\n"
        "for m in pkgutil.iter_modules(b.__path__): importlib.import_module('agent_sandbox.backends.' + m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'rich'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"
