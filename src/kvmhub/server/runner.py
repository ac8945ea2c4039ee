"""Long work as operations: each request that can take more than a moment runs on a worker thread.

The runner writes the operation's journal record before the work starts (so ``GET /operations/{id}`` answers at
once), hands the work a Reporter whose events go to the event bus and whose cancel token ``DELETE`` sets, and
the first journalled operation the service opens takes that record over (see
:meth:`kvmhub.reporting.Reporter.claim_operation_id`). The record is finished with the work's result or error;
after a server restart one left running is recovered like any interrupted operation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv.connection import host_root
from kvmhub.models import OperationInfo, OperationState, Recovery
from kvmhub.models.events import BytesEvent, Event, PhaseEvent
from kvmhub.ops.cancel import Cancelled, CancelToken
from kvmhub.ops.journal import Journal
from kvmhub.reporting import Reporter
from kvmhub.server.bus import EventBus
from kvmhub.services import projects
from kvmhub.services.vm import listing

log = logging.getLogger(__name__)

Work = Callable[[Reporter], Any]
MAX_PARALLEL = 8
BYTES_EVERY_S = 0.5
# libvirt's event for what an operation did may arrive just after the operation finished
ACTOR_GRACE_S = 3.0


class _Running:
    def __init__(self, vm: str | None, requested_by: str | None) -> None:
        self.token = CancelToken()
        self.done = threading.Event()
        self.vm = vm
        self.requested_by = requested_by
        self.started = time.monotonic()
        self.finished: float | None = None


class Actor(BaseModel):
    """An API operation acting on a VM: which one and who asked for it."""

    operation: str
    requested_by: str | None = None


class Runner:
    """Runs operations on daemon threads, at most ``parallel`` at a time (the rest wait their turn)."""

    def __init__(self, uri: str, bus: EventBus, journal: Journal | None = None, parallel: int = MAX_PARALLEL) -> None:
        self.uri = uri
        self.bus = bus
        self.journal = journal or Journal()
        self._slots = threading.BoundedSemaphore(parallel)
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._recent: dict[str, _Running] = {}  # finished within ACTOR_GRACE_S

    def submit(self, kind: str, target: str, work: Work, *, requested_by: str | None = None,
               vm: str | None = None, project: str | None = None) -> OperationInfo:
        """Record the operation as running and start ``work(report)``; returns the record. Its events carry
        ``vm`` and ``project``."""
        op_id = uuid.uuid4().hex[:12]
        self.journal.begin(op_id, kind, target, self.uri, host_root(), f"api {kind} {target}", Recovery.UNDO, [],
                           requested_by=requested_by)
        running = _Running(vm, requested_by)
        with self._lock:
            self._running[op_id] = running

        last_bytes = [0.0]

        def sink(event: Event) -> None:
            # phases and (every half second) bytes go to the journal too: what GET /operations/{id} shows
            if isinstance(event, PhaseEvent):
                self.journal.set_phase(op_id, event.name)
            elif isinstance(event, BytesEvent) and time.monotonic() - last_bytes[0] >= BYTES_EVERY_S:
                last_bytes[0] = time.monotonic()
                self.journal.set_phase(op_id, event.what, event.done, event.total)
            self.bus.publish("operation", {"kind": kind, "target": target, "event": event.model_dump(mode="json")},
                             operation=op_id, vm=vm, project=project, requested_by=requested_by)

        report = Reporter(sink, running.token, operation_id=op_id)
        thread = threading.Thread(target=self._run, args=(op_id, kind, target, work, report, running, vm,
                                                          requested_by, project),
                                  name=f"op:{kind}:{target}", daemon=True)
        thread.start()
        info = self.journal.get(op_id)
        assert info is not None
        return info

    def _run(self, op_id: str, kind: str, target: str, work: Work, report: Reporter, running: _Running,
             vm: str | None, requested_by: str | None, project: str | None = None) -> None:
        state, error, result = OperationState.SUCCEEDED, None, None
        listing.operation_started(vm)  # while it runs, listings are read afresh (see routes/vms.py)
        try:
            with self._slots:
                report.cancel.check()
                result = work(report)
        except Cancelled as exc:
            state, error = OperationState.CANCELLED, {**exc.to_dict(front="api"), "terms": exc.terms()}
        except KvmhubError as exc:
            state, error = OperationState.FAILED, {**exc.to_dict(front="api"), "terms": exc.terms()}
        except Exception as exc:  # a defect: reported as a failed operation, logged with its traceback
            log.exception("operation %s (%s %s) failed", op_id, kind, target)
            state, error = OperationState.FAILED, {"code": "failed", "message": f"{type(exc).__name__}: {exc}"}
        try:
            if result is not None:
                self.journal.set_result(op_id, _jsonable(result))
            current = self.journal.get(op_id)
            if current is not None and current.state is OperationState.RUNNING:  # no journalled step finished it
                self.journal.finish(op_id, state, error)
            elif current is not None and error is not None:  # the error as the API phrases it, terms kept
                self.journal.finish(op_id, current.state, error)
        finally:
            listing.operation_ended(vm)  # before it leaves the running set: a listing read from now on sees its effect
            with self._lock:
                self._running.pop(op_id, None)
                running.finished = time.monotonic()
                self._recent[op_id] = running
            running.done.set()
            final = self.journal.get(op_id)
            self.bus.publish("operation", {"kind": kind, "target": target,
                                           "state": str(final.state if final else state)},
                             operation=op_id, vm=vm, project=project, requested_by=requested_by)

    def get(self, op_id: str) -> OperationInfo:
        info = self.journal.get(op_id)
        if info is None:
            raise NotFound(f"no operation {op_id!r}", hint="list them: {cmd:ops ls}", code="op.not_found")
        return info

    def wait(self, op_id: str, timeout: float) -> OperationInfo:
        """The operation once it has finished, or as it stands after ``timeout`` seconds."""
        self.get(op_id)  # NotFound for an unknown id
        with self._lock:
            running = self._running.get(op_id)
        if running is not None:
            running.done.wait(timeout)
        # read after the check: an operation that finished in between is read finished, not as it was before
        return self.get(op_id)

    def cancel(self, op_id: str) -> OperationInfo:
        """Ask a running operation to stop (it undoes what it made); a finished one is left as it is."""
        info = self.get(op_id)
        with self._lock:
            running = self._running.get(op_id)
        if running is not None:
            running.token.cancel("cancelled through the API")
        return info

    def actor(self, vm: str) -> Actor | None:
        """The API operation acting on ``vm`` now (or that finished a moment ago), latest first; None if none."""
        now = time.monotonic()
        with self._lock:
            for op_id, done in list(self._recent.items()):
                if done.finished is not None and now - done.finished > ACTOR_GRACE_S:
                    del self._recent[op_id]
            candidates = [(r.started, op_id, r) for op_id, r in (*self._running.items(), *self._recent.items())
                          if r.vm == vm]
        if not candidates:
            return None
        _, op_id, latest = max(candidates, key=lambda c: c[0])
        return Actor(operation=op_id, requested_by=latest.requested_by)

    def busy(self) -> int:
        with self._lock:
            return len(self._running)


class CallerRunner:
    """The runner as one request sees it: operations it starts are recorded as asked for by its caller."""

    def __init__(self, runner: Runner, caller: str, hv: Hypervisor | None = None) -> None:
        self.runner = runner
        self.caller = caller
        self.journal = runner.journal
        self.hv = hv

    def submit(self, kind: str, target: str, work: Work, *, vm: str | None = None,
               project: str | None = None) -> OperationInfo:
        """Start an operation; its events carry ``project`` (by default the project of the ``vm`` it acts on)."""
        if project is None and vm is not None and self.hv is not None:
            with contextlib.suppress(KvmhubError):
                project = projects.vm_project(self.hv, vm)
        return self.runner.submit(kind, target, work, requested_by=self.caller, vm=vm, project=project)

    def get(self, op_id: str) -> OperationInfo:
        return self.runner.get(op_id)

    def wait(self, op_id: str, timeout: float) -> OperationInfo:
        return self.runner.wait(op_id, timeout)

    def cancel(self, op_id: str) -> OperationInfo:
        return self.runner.cancel(op_id)


def _jsonable(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, list):
        return [_jsonable(r) for r in result]
    return result
