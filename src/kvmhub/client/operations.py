"""Following a server's operation: its phase and bytes become the CLI's events, Ctrl-C cancels it."""

from __future__ import annotations

from typing import Any

from kvmhub.client.transport import Transport
from kvmhub.errors import from_dict
from kvmhub.models.events import BytesEvent, PhaseEvent
from kvmhub.models.operation import OperationInfo, OperationState
from kvmhub.reporting import Reporter

POLL_S = 0.5
DONE_OK = (OperationState.SUCCEEDED, OperationState.COMPLETED)


def follow(transport: Transport, op: dict[str, Any], report: Reporter) -> OperationInfo:
    """Wait for the operation to end, reporting its phases and bytes; the finished operation (its ``result``),
    or its error raised.

    Ctrl-C asks the server to cancel it (it takes back what it made) and waits for that to finish.
    """
    info = OperationInfo.model_validate(op)
    phase, moved = None, None
    cancelled = False
    while True:
        if info.phase is not None and info.phase != phase:
            phase = info.phase
            report.emit(PhaseEvent(name=phase))
        if info.progress_total and info.progress_done is not None and info.progress_done != moved:
            moved = info.progress_done
            report.emit(BytesEvent(what=info.phase or info.kind, done=moved, total=info.progress_total))
        if info.state not in (OperationState.RUNNING, OperationState.RECOVERING):
            break
        try:
            info = OperationInfo.model_validate(
                transport.request("GET", f"/operations/{info.id}/wait?timeout={POLL_S}", timeout=POLL_S + 30))
        except KeyboardInterrupt:
            if cancelled:
                raise
            cancelled = True
            report.emit(PhaseEvent(name="cancelling (the server takes back what was made)"))
            transport.request("DELETE", f"/operations/{info.id}")
    if info.state in DONE_OK:
        if cancelled:
            raise KeyboardInterrupt
        return info
    if cancelled:
        raise KeyboardInterrupt
    raise from_dict(info.error or {"message": f"operation {info.id} ended {info.state}"})
