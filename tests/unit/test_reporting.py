"""One typed event sink: what services report, how the API would serialize it, and how cancel stops work."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from kvmhub.hv import Hypervisor
from kvmhub.models.events import BytesEvent, Event, NoteEvent, PhaseEvent, UndoEvent, WarningEvent
from kvmhub.ops.cancel import Cancelled, CancelToken
from kvmhub.ops.journal import Journal
from kvmhub.ops.operation import Operation
from kvmhub.reporting import Reporter
from kvmhub.tools.filecopy import PIECE, copy_file

EVENTS: TypeAdapter[Event] = TypeAdapter(Event)


def test_every_event_round_trips_as_json_with_its_kind() -> None:
    seen: list[Event] = []
    r = Reporter(seen.append)
    r.phase("defining the VM")
    r.bytes("uploading vda", 5, 10)
    r.warn("warning: guests run under TCG", code="host.tcg")
    r.note("address 10.0.0.5")
    r.undone("delete volume web-disk0.qcow2", "pool gone")
    assert [type(e) for e in seen] == [PhaseEvent, BytesEvent, WarningEvent, NoteEvent, UndoEvent]
    assert seen[2] == WarningEvent(message="guests run under TCG", code="host.tcg")  # the prefix is the CLI's
    assert seen[4] == UndoEvent(step="delete volume web-disk0.qcow2", ok=False, error="pool gone")
    for event in seen:
        assert EVENTS.validate_json(event.model_dump_json()) == event


def test_a_bytes_report_after_cancel_raises_and_reports_nothing_more() -> None:
    seen: list[Event] = []
    r = Reporter(seen.append)
    r.bytes("copy", 1, 10)
    r.cancel.cancel("cancelled by the API")
    with pytest.raises(Cancelled, match="operation cancelled by the API") as info:
        r.bytes("copy", 2, 10)
    assert info.value.code == "op.cancelled"
    assert seen == [BytesEvent(what="copy", done=1, total=10)]


def test_cancel_from_another_thread_stops_a_copy_mid_way_and_the_operation_undoes(tmp_path: Path) -> None:
    """A service run on a worker thread is stopped by another thread through its reporter's token."""
    root = tmp_path
    src = root / "src"
    with open(src, "wb") as fh:
        fh.truncate(PIECE * 4)  # sparse: four pieces, four byte reports
    dst = root / "dst"
    dst.touch()
    seen: list[Event] = []
    token = CancelToken()
    started = threading.Event()

    def sink(event: Event) -> None:
        seen.append(event)
        if isinstance(event, BytesEvent):
            started.set()

    outcome: list[BaseException] = []

    def work() -> None:
        report = Reporter(sink, token)
        try:
            with Operation(Hypervisor("test:///default"), "test.copy", "dst", report=report,
                           journal=Journal(root / "j.db")) as op:
                op.add("remove dst", lambda: dst.unlink(missing_ok=True))

                def progress(done: int, total: int) -> None:
                    op.progress("copying", done, total)
                    cancelled.wait(10)  # the first piece is copied; go on once the canceller has spoken

                copy_file(src, dst, progress, what="test")
                op.success()
        except BaseException as exc:
            outcome.append(exc)

    cancelled = threading.Event()
    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(10), outcome
    token.cancel()
    cancelled.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert not dst.exists()  # the undo ran
    assert UndoEvent(step="remove dst") in seen
    done = [e.done for e in seen if isinstance(e, BytesEvent)]
    assert done == [PIECE]  # stopped after the first piece, not after the copy ended
