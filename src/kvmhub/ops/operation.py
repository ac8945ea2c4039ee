"""An Operation: a journalled list of steps with undo, holding the locks of what it works on.

    with Operation(hv, "vm.create", name, locks=[LockSpec("vm", name)], report=report) as op:
        op.add("delete volume web-disk0.qcow2", Action("volume.delete", {"pool": "kvmhub-disks", ...}))
        vol = pool.create_volume(...)                 # the step acts after its undo is journalled
        op.made(key=vol.key())                        # what it made, as it turned out
        ...
        op.success()

Leaving the block without ``success()`` (an error, Ctrl-C, SIGTERM, a cancel) runs the undos newest first and
records the outcome; a process killed outright leaves the journal to the next kvmhub process (``recovery``).
An operation with ``recovery=FORWARD`` (rm) is finished rather than undone after a crash: its steps are all
journalled up front and each is marked done as it completes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kvmhub import faults
from kvmhub.errors import KvmhubError
from kvmhub.hv.connection import host_root
from kvmhub.models.operation import OperationState, Recovery, StepState
from kvmhub.ops import actions
from kvmhub.ops.cancel import Cancelled, CancelToken
from kvmhub.ops.journal import Journal
from kvmhub.ops.locks import LockSpec, hold
from kvmhub.reporting import QUIET, Reporter

if TYPE_CHECKING:
    from kvmhub.hv import Hypervisor

log = logging.getLogger(__name__)

Undoer = actions.Action | Callable[[], object]
_PROGRESS_EVERY_S = 0.5


class _Step:
    def __init__(self, seq: int, description: str, undo: Undoer | None) -> None:
        self.seq = seq
        self.description = description
        self.undo = undo
        self.state = StepState.PENDING


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while an undo runs (main thread only); a second Ctrl-C must not cut it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class Operation:
    """One journalled operation. See the module docstring."""

    def __init__(
        self,
        hv: Hypervisor,
        kind: str,
        target: str,
        *,
        locks: Sequence[LockSpec] = (),
        report: Reporter = QUIET,
        recovery: Recovery = Recovery.UNDO,
        cancel: CancelToken | None = None,
        journal: Journal | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        self.hv = hv
        self.kind = kind
        self.target = target
        self.id = report.claim_operation_id() or uuid.uuid4().hex[:12]
        self.recovery = recovery
        self.cancel = cancel or report.cancel
        self.journal = journal or Journal()
        self._locks = list(locks)
        self._lock_timeout = lock_timeout
        self.report = report
        self._steps: list[_Step] = []
        self._done = False
        self._stack = contextlib.ExitStack()
        self._last_progress = 0.0
        self.failures: list[str] = []

    # -- life -----------------------------------------------------------------------------------------

    def __enter__(self) -> Operation:
        self.journal.begin(self.id, self.kind, self.target, self.hv.uri, host_root(), " ".join(sys.argv) or None,
                           self.recovery, [f"{'shared:' if s.shared else ''}{s.label}" for s in self._locks])
        try:
            self._stack.enter_context(hold(self.hv.uri, self._locks, op_id=self.id, timeout=self._lock_timeout))
        except BaseException as exc:
            self.journal.finish(self.id, OperationState.FAILED, _error_dict(exc))
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._done:
                return
            if self.recovery is Recovery.FORWARD and exc is not None:
                # a forward operation that failed in-process: what is left is for repair to finish
                self.journal.finish(self.id, OperationState.NEEDS_REPAIR if self._pending() else
                                    OperationState.FAILED, _error_dict(exc))
                return
            self.rollback()
            cancelled = isinstance(exc, KeyboardInterrupt | Cancelled)
            state = OperationState.CANCELLED if cancelled else OperationState.FAILED
            if self.failures:
                state = OperationState.NEEDS_REPAIR
            self.journal.finish(self.id, state, _error_dict(exc) if exc else None)
        finally:
            self._stack.close()

    # -- steps ----------------------------------------------------------------------------------------

    def add(self, description: str, undo: Undoer | None = None) -> None:
        """Journal a step and its undo before the step acts (checks the cancel token first).

        ``undo`` is an :class:`~kvmhub.ops.actions.Action` (survives a crash) or a plain callable (in-process only;
        after a crash the step is left for ``kvmhub repair`` to show).
        """
        self.cancel.check()
        self._mark_done()
        step = _Step(len(self._steps) + 1, description, undo)
        self._steps.append(step)
        action = undo.kind if isinstance(undo, actions.Action) else None
        params = undo.params if isinstance(undo, actions.Action) else {}
        self.journal.add_step(self.id, step.seq, description, action, params)

    def on_exit(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` when the operation ends, however it ends (closing a file): cleanup, not an undo."""
        self._stack.callback(fn)

    def made(self, **params: Any) -> None:
        """Record what the newest step made, as it turned out (a volume key, an assigned port ...)."""
        step = self._steps[-1]
        if isinstance(step.undo, actions.Action):
            step.undo.params.update(params)
            self.journal.update_step(self.id, step.seq, params=step.undo.params)

    def phase(self, name: str) -> None:
        """Name the phase the operation is in (journal, and the reporter)."""
        self.cancel.check()
        self.report.phase(name)
        self.journal.set_phase(self.id, name)

    def progress(self, what: str, done: int, total: int) -> None:
        """Bytes moved: reported, and written to the journal at most every half second.

        Raises Cancelled when a cancel was asked for, so a transfer reporting through here stops mid-way.
        """
        self.cancel.check()
        self.report.bytes(what, done, total)
        now = time.monotonic()
        if now - self._last_progress >= _PROGRESS_EVERY_S or done >= total:
            self._last_progress = now
            self.journal.set_phase(self.id, what, done, total)

    def success(self) -> None:
        self._mark_done()
        self._done = True
        self.journal.finish(self.id, OperationState.SUCCEEDED)

    def forward(self, description: str, action: actions.Action) -> None:
        """Journal a step of a roll-forward operation (all of them up front, see :meth:`run_forward`)."""
        self._steps.append(_Step(len(self._steps) + 1, description, action))
        self.journal.add_step(self.id, len(self._steps), description, action.kind, action.params)

    def run_forward(self, ctx: actions.Context, report: Callable[[str, KvmhubError], None] | None = None) -> None:
        """Carry out every journalled forward step in order, each marked done when it completes.

        A step that fails is reported (when ``report`` is given) and the rest still run; without ``report`` the
        error propagates and the operation is left for repair.
        """
        for step in self._steps:
            if step.state is not StepState.PENDING or not isinstance(step.undo, actions.Action):
                continue
            try:
                actions.run(ctx, step.undo)
            except KvmhubError as exc:
                if report is None:
                    raise
                report(step.description, exc)
                self.journal.update_step(self.id, step.seq, state=StepState.UNDO_FAILED, error=exc.message)
                step.state = StepState.UNDO_FAILED
                continue
            step.state = StepState.DONE
            self.journal.update_step(self.id, step.seq, state=StepState.DONE)
            faults.point(f"{self.kind}:{step.undo.kind}")

    def done_steps(self) -> list[str]:
        """The descriptions of the steps carried out (forward operations)."""
        return [s.description for s in self._steps if s.state is StepState.DONE]

    def rollback(self) -> None:
        """Run every registered undo, newest first; an undo that fails is noted and the rest still run."""
        self.hv.settle()
        ctx = actions.Context(self.hv, host_root())
        with signals_deferred():
            while self._steps:
                step = self._steps.pop()
                if step.undo is None:
                    continue
                try:
                    if isinstance(step.undo, actions.Action):
                        actions.run(ctx, step.undo)
                    else:
                        step.undo()
                except BaseException as exc:  # keep undoing the rest even if one step fails
                    msg = f"undo step {step.description!r} failed: {exc}"
                    log.warning(msg)
                    self.failures.append(msg)
                    self.journal.update_step(self.id, step.seq, state=StepState.UNDO_FAILED, error=str(exc))
                    self.report.undone(step.description, str(exc))
                    continue
                self.journal.update_step(self.id, step.seq, state=StepState.UNDONE)
                self.report.undone(step.description)

    def _mark_done(self) -> None:
        for step in self._steps:
            if step.state is StepState.PENDING:
                step.state = StepState.DONE
                self.journal.update_step(self.id, step.seq, state=StepState.DONE)

    def _pending(self) -> bool:
        return any(s.state is StepState.PENDING for s in self._steps)


def _error_dict(exc: BaseException | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    if isinstance(exc, KvmhubError):
        return {**{k: v for k, v in exc.to_dict().items() if v is not None}, "terms": exc.terms()}
    if isinstance(exc, KeyboardInterrupt):
        return {"error": "Interrupted", "message": f"interrupted (pid {os.getpid()})"}
    return {"error": type(exc).__name__, "message": str(exc)}
