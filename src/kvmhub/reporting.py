"""How running work reports and is cancelled: one typed event sink and one cancel token, held by a Reporter.

A service takes ``report: Reporter`` and emits typed events (phase, bytes, warning, note, undo result) through
it; the CLI renders them, a server streams them. ``report.cancel`` is the token a caller sets to stop the work:
operations check it between steps and on every byte report, so a transfer stops within one report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kvmhub import models  # its event models load on the first event: a quiet run never builds them
from kvmhub.ops.cancel import CancelToken

if TYPE_CHECKING:
    from kvmhub.models.events import Event

EventSink = Callable[["Event"], None]
BytesFn = Callable[[str, int, int], None]
"""What a transfer reports into: (what, bytes done, bytes in all); :meth:`Reporter.bytes` is one."""


def _drop(_event: Event) -> None:
    """A sink that drops every event."""


class Reporter:
    """The sink a service emits into, and the cancel token it honours."""

    __slots__ = ("_operation_id", "cancel", "sink")

    def __init__(self, sink: EventSink | None = None, cancel: CancelToken | None = None,
                 operation_id: str | None = None) -> None:
        self.sink: EventSink = sink or _drop
        self.cancel = cancel or CancelToken()
        self._operation_id = operation_id

    def claim_operation_id(self) -> str | None:
        """The id a caller chose for the work's operation (the API announces it before the work starts); the
        first journalled operation the work opens takes it, later ones get their own."""
        op_id, self._operation_id = self._operation_id, None
        return op_id

    def emit(self, event: Event) -> None:
        self.sink(event)

    def phase(self, name: str) -> None:
        self.sink(models.PhaseEvent(name=name))

    def bytes(self, what: str, done: int, total: int) -> None:
        """Report bytes moved; raises Cancelled when a cancel was asked for, which stops the transfer."""
        self.cancel.check()
        self.sink(models.BytesEvent(what=what, done=max(done, 0), total=max(total, done, 0)))

    def warn(self, message: str, code: str | None = None) -> None:
        self.sink(models.WarningEvent(message=message.removeprefix("warning: "), code=code))

    def note(self, message: str) -> None:
        self.sink(models.NoteEvent(message=message))

    def undone(self, step: str, error: str | None = None) -> None:
        self.sink(models.UndoEvent(step=step, ok=error is None, error=error))


QUIET = Reporter()
"""The default of services called without a reporter: drops events; nobody holds its token to cancel it."""
