"""Byte progress for the uploads of a command that shows its steps with :func:`output.phases`.

On a terminal each upload gets a Rich bar (bytes, rate, ETA) under the phase line, shown from the first
byte on; otherwise a line every 10 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kvmhub.cli import output
from kvmhub.validate import format_size

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

ProgressFn = Callable[[str, int, int], None]


@contextmanager
def uploads(title: str) -> Iterator[ProgressFn]:
    """A ``progress(what, done, total)`` callback; use it inside ``output.phases`` (bars nest under it)."""
    start = time.monotonic()
    if not output.err.is_terminal:
        shown: dict[str, int] = {}

        def plain(what: str, done: int, total: int) -> None:
            pct = 100 * done // total if total else 100
            if pct >= shown.get(what, -10) + 10:
                shown[what] = pct
                output.err.print(f"{title}: {what}: {pct}% of {format_size(total)} "
                                 f"({time.monotonic() - start:.1f} s)", markup=False)

        yield plain
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bars

    bars: Progress = Bars(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), TimeRemainingColumn(), console=output.err)
    tasks: dict[str, TaskID] = {}

    def live(what: str, done: int, total: int) -> None:
        if not tasks:
            bars.start()
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total)
        bars.update(tasks[what], completed=done, total=max(total, done))

    try:
        yield live
    finally:
        if tasks:
            bars.refresh()  # the enclosing phase line's display shows the last frame until its next tick
            bars.stop()
