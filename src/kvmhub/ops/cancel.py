"""A cancel token: how a caller (Ctrl-C in the CLI, a DELETE in the API) asks running work to stop and undo."""

from __future__ import annotations

import threading

from kvmhub.errors import OperationFailed


class Cancelled(OperationFailed):
    """The operation was cancelled; what it had made was taken back."""


class CancelToken:
    """Set once by whoever wants the work to stop; the work checks it between steps and in transfers."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was asked for."""
        if self._event.is_set():
            raise Cancelled(f"operation {self.reason}", cause="a cancel was requested",
                            hint="nothing to do: what the operation had made was removed", code="op.cancelled")
