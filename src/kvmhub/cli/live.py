"""How the CLI shows a running operation: the events of its Reporter drawn on stderr.

On a terminal the current phase sits on a live line with the elapsed time, each transfer gets a Rich bar
(bytes, rate, time left) from its first byte on, and warnings, notes and undo steps print on lines of their own.
Otherwise (a pipe, a log) every phase, warning, note and undo step is one line, a transfer one line per 10 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.text import Text

from kvmhub.cli import output

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from kvmhub.models.events import Event
    from kvmhub.reporting import Reporter


def aside(event: Event) -> tuple[str, bool] | None:
    """The line a warning, note or undo event prints (and whether it is a warning); None for phases and bytes."""
    from kvmhub.models.events import NoteEvent, UndoEvent, WarningEvent

    if isinstance(event, WarningEvent):
        return f"warning: {event.message}", True
    if isinstance(event, NoteEvent):
        return event.message, False
    if isinstance(event, UndoEvent):
        return (f"undo: {event.step}", True) if event.ok else (f"undo: {event.step}: failed: {event.error}", True)
    return None


@contextmanager
def report(title: str) -> Iterator[Reporter]:
    """A Reporter whose events are drawn under ``title`` until the block ends."""
    from kvmhub.reporting import Reporter

    start = time.monotonic()
    if not output.err.is_terminal:
        yield Reporter(_plain(title, start))
        return
    with _live(title, start) as sink:
        yield Reporter(sink)


def _plain(title: str, start: float) -> Callable[[Event], None]:
    from kvmhub.models.events import BytesEvent, PhaseEvent
    from kvmhub.validate import format_size

    shown: dict[str, int] = {}

    def sink(event: Event) -> None:
        elapsed = f"({time.monotonic() - start:.1f} s)"
        if isinstance(event, PhaseEvent):
            output.err.print(f"{title}: {event.name} {elapsed}", markup=False)
        elif isinstance(event, BytesEvent):
            pct = 100 * event.done // event.total if event.total else 100
            if pct >= shown.get(event.what, -10) + 10:
                shown[event.what] = pct
                output.err.print(f"{title}: {event.what}: {pct}% of {format_size(event.total)} {elapsed}",
                                 markup=False)
        elif (line := aside(event)) is not None:
            output.err.print(f"{title}: {line[0]}", markup=False)

    return sink


@contextmanager
def _live(title: str, start: float) -> Iterator[Callable[[Event], None]]:
    from rich.live import Live
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bars

    from kvmhub.models.events import BytesEvent, PhaseEvent

    current = ["starting"]

    def status() -> str:
        return f"{title}: {current[0]} ({time.monotonic() - start:.1f} s)"

    class Ticker:
        """Re-rendered by Live a few times a second, so the elapsed time keeps moving."""

        def __rich__(self) -> Text:
            return Text(f"… {status()}", style="bold")

    bars: Progress = Bars(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeRemainingColumn(), console=output.err)
    tasks: dict[str, TaskID] = {}
    with Live(Ticker(), console=output.err, refresh_per_second=4, transient=True) as live:

        def sink(event: Event) -> None:
            if isinstance(event, PhaseEvent):
                current[0] = event.name
                live.console.print(f"  {status()}", markup=False, style="dim")
            elif isinstance(event, BytesEvent):
                if not tasks:
                    bars.start()
                if event.what not in tasks:
                    tasks[event.what] = bars.add_task(event.what, total=event.total)
                bars.update(tasks[event.what], completed=event.done, total=max(event.total, event.done))
            elif (line := aside(event)) is not None:
                live.console.print(f"{title}: {line[0]}", markup=False, style="yellow" if line[1] else None)

        try:
            yield sink
        finally:
            if tasks:
                bars.refresh()
                bars.stop()


def line(event: Event) -> None:
    """One event as a plain line on stderr (phases, warnings, notes; bytes are left out)."""
    from kvmhub.models.events import BytesEvent, PhaseEvent

    if isinstance(event, PhaseEvent):
        output.say(event.name)
    elif isinstance(event, BytesEvent):
        return
    elif (line := aside(event)) is not None:
        output.say(line[0])


def lines() -> Reporter:
    """A Reporter for short work: every phase, warning, note and undo step one plain line on stderr, no bars."""
    from kvmhub.reporting import Reporter

    return Reporter(line)
