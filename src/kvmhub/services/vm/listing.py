"""The VM listing for many callers at once (the server): concurrent callers share one listing of the host.

A caller is only ever answered by a listing that started after it asked, so sharing never shows it a state
older than its request; what it saves is the libvirt round trips and row building of the callers that arrive
while a listing runs (they all take the next one, which starts when the running one ends), and the JSON
encoding of the rows, made once per listing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from pydantic import TypeAdapter

from kvmhub.hv import Hypervisor
from kvmhub.models import VMInfo
from kvmhub.services.vm import lifecycle

T = TypeVar("T")


class SharedRun(Generic[T]):
    """One run at a time for any number of threads; each caller gets the result (or the error) of a run that
    started after it called :meth:`get`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0  # runs started so far; the last one may still be running
        self._running = False
        self._finished = 0  # the number of the last run that ended, whose outcome is kept below
        self._result: T | None = None
        self._error: BaseException | None = None

    def get(self, fetch: Callable[[], T]) -> T:
        """The result of a run that started after this call: ``fetch`` run by this thread, or another's run."""
        with self._cond:
            wanted = self._started + 1  # a run already going may have read the host before this call
            while self._finished < wanted:
                if not self._running:
                    return self._run(fetch)
                self._cond.wait()
            return self._outcome()

    def _run(self, fetch: Callable[[], T]) -> T:
        """Called holding the lock, with no run going: runs ``fetch`` without it, then wakes the waiters."""
        self._running = True
        self._started += 1
        number = self._started
        result: T | None = None
        error: BaseException | None = None
        self._cond.release()
        try:
            result = fetch()
        except BaseException as exc:  # handed to every caller that waited for this run
            error = exc
        finally:
            self._cond.acquire()
            self._running = False
            self._finished = number
            self._result, self._error = result, error
            self._cond.notify_all()
        return self._outcome()

    def _outcome(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # set by the run that ended without an error


VM_LIST: TypeAdapter[list[VMInfo]] = TypeAdapter(list[VMInfo])
_runs: weakref.WeakKeyDictionary[Hypervisor, SharedRun[tuple[list[VMInfo], bytes]]] = weakref.WeakKeyDictionary()
_runs_lock = threading.Lock()


def _listing(hv: Hypervisor) -> tuple[list[VMInfo], bytes]:
    found = lifecycle.list_vms(hv)
    return found, VM_LIST.dump_json(found)


def _shared(hv: Hypervisor) -> tuple[list[VMInfo], bytes]:
    with _runs_lock:
        run = _runs.get(hv)
        if run is None:
            run = _runs[hv] = SharedRun()
    return run.get(lambda: _listing(hv))


def list_vms(hv: Hypervisor) -> list[VMInfo]:
    """:func:`kvmhub.services.vm.lifecycle.list_vms`, shared by the callers asking ``hv`` at the same time."""
    return list(_shared(hv)[0])


def list_vms_json(hv: Hypervisor) -> bytes:
    """The same listing as JSON (a list of VMInfo), made once for all the callers that shared it."""
    return _shared(hv)[1]
