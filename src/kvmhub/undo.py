"""Step lists with undo: each finished step registers how to take it back.

    with Undo() as undo:
        vol = make_disk(); undo.add("delete disk", vol.delete)
        dom = define(...); undo.add("undefine VM", dom.undefine)
        undo.success()

Leaving the block without success() (an error, Ctrl-C) runs the undos in reverse order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class Undo:
    def __init__(self, report: Callable[[str], None] | None = None) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._done = False
        self._report = report
        self.failures: list[str] = []

    def add(self, description: str, fn: Callable[[], object]) -> None:
        self._steps.append((description, fn))

    def success(self) -> None:
        self._done = True
        self._steps.clear()

    def rollback(self) -> None:
        """Run every registered undo, newest first; an undo that fails is noted and the rest still run."""
        while self._steps:
            description, fn = self._steps.pop()
            if self._report:
                self._report(f"undo: {description}")
            try:
                fn()
            except BaseException as exc:  # keep undoing the rest even if one step fails
                msg = f"undo step {description!r} failed: {exc}"
                log.warning(msg)
                self.failures.append(msg)

    def __enter__(self) -> Undo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self.rollback()
