"""The operation runner: a wait answers with the operation as it ended, however close the end came."""

from __future__ import annotations

import threading

from kvmhub.models import OperationInfo, OperationState
from kvmhub.ops.journal import Journal
from kvmhub.reporting import Reporter
from kvmhub.server.bus import EventBus
from kvmhub.server.runner import Runner


class _FinishesOnFirstRead(Journal):
    """A journal whose first read of an operation lets the work end and waits until it has."""

    def __init__(self, release: threading.Event, runner_done: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.runner_done = runner_done
        self.armed = False

    def get(self, op_id: str) -> OperationInfo | None:
        info = super().get(op_id)
        if self.armed:
            self.armed = False
            self.release.set()
            self.runner_done.wait(10)
        return info


def test_wait_reads_an_operation_that_finished_while_it_looked() -> None:
    release, ended = threading.Event(), threading.Event()
    journal = _FinishesOnFirstRead(release, ended)
    runner = Runner("test:///default", EventBus(), journal)

    def work(report: Reporter) -> str:
        release.wait(10)
        return "done"

    info = runner.submit("test.work", "x", work)
    original_run_end = runner._lock

    class _Signal:
        # set once the runner has removed the operation from its running set
        def __enter__(self) -> None:
            original_run_end.acquire()

        def __exit__(self, *exc: object) -> None:
            finished = info.id not in runner._running
            original_run_end.release()
            if finished:
                ended.set()

    runner._lock = _Signal()  # type: ignore[assignment]
    journal.armed = True
    done = runner.wait(info.id, 10)
    assert done.state is OperationState.SUCCEEDED
    assert done.result == "done"
