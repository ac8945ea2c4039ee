"""Step lists with undo for work that is not journalled (host network changes that roll themselves back).

    with Undo() as undo:
        vol = make_disk(); undo.add("delete disk", vol.delete)
        undo.success()

Leaving the block without success() (an error, Ctrl-C) runs the undos in reverse order. Operations on libvirt
objects use :class:`kvmhub.ops.operation.Operation` instead, which journals each step so a crash is undone too;
both accept the same ``add(description, undo)`` (see :class:`kvmhub.ops.actions.StepLog`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from kvmhub.hv.connection import host_root
from kvmhub.ops import actions
from kvmhub.reporting import QUIET, Reporter

if TYPE_CHECKING:
    from kvmhub.hv import Hypervisor

log = logging.getLogger(__name__)


class Undo:
    def __init__(self, report: Reporter = QUIET, hv: Hypervisor | None = None) -> None:
        self._steps: list[tuple[str, actions.Action | Callable[[], object] | None]] = []
        self._done = False
        self._report = report
        self._hv = hv
        self.failures: list[str] = []

    def add(self, description: str, undo: actions.Action | Callable[[], object] | None = None) -> None:
        self._steps.append((description, undo))

    def made(self, **params: object) -> None:
        """Record what the newest step made (kept on its action, as :class:`Operation` does)."""
        _, undo = self._steps[-1]
        if isinstance(undo, actions.Action):
            undo.params.update(params)

    def success(self) -> None:
        self._done = True
        self._steps.clear()

    def rollback(self) -> None:
        """Run every registered undo, newest first; an undo that fails is noted and the rest still run."""
        while self._steps:
            description, fn = self._steps.pop()
            if fn is None:
                continue
            try:
                if isinstance(fn, actions.Action):
                    if self._hv is None:
                        raise RuntimeError("an action undo needs Undo(hv=...)")
                    actions.run(actions.Context(self._hv, host_root()), fn)
                else:
                    fn()
            except BaseException as exc:  # keep undoing the rest even if one step fails
                msg = f"undo step {description!r} failed: {exc}"
                log.warning(msg)
                self.failures.append(msg)
                self._report.undone(description, str(exc))
                continue
            self._report.undone(description)

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
