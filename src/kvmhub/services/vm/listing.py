"""The VM listing for many callers at once (the server): concurrent callers share one listing of the host, and
a listing is kept until the host changes.

A listing is answered again, without asking libvirt, until :func:`changed` is called — by the server for each
libvirt event, each mutating request and each operation's start and end. A change of one VM (its events, its
state actions and operations) marks only that VM: the next caller reads its row again (a few calls) and the rest
is kept, so a host of 500 VMs is not read whole, and libvirtd not kept busy, after each start or stop. Any other
change drops the listing; a new one is then read in the background, so the caller after the change rarely waits
for it. Guest addresses come from DHCP leases,
which no event announces: past ``MAX_AGE_S`` a new listing is read in the background while the kept one is still
answered, and past ``STALE_S`` (the background read failed or is stuck) callers wait for a new one.

Otherwise a caller is answered by a listing that started after it asked: callers that arrive while one runs all
take the next one, which starts when the running one ends. The JSON encoding of the rows is made once per
listing.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import TypeAdapter

from kvmhub.hv import Hypervisor
from kvmhub.models import VMInfo
from kvmhub.services.vm import lifecycle

T = TypeVar("T")
log = logging.getLogger(__name__)


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
MAX_AGE_S = 1.0  # past this, a kept listing is still answered while a new one is read in the background
STALE_S = 5.0  # past this, it is not answered: the caller waits for a new one
Listing = tuple[list[VMInfo], bytes]


@dataclass(frozen=True)
class _Read:
    """A listing, what it was read at (:func:`_seen`), when, and the last one-VM change it includes."""

    listing: Listing
    seen: tuple[int, int]
    at: float
    marked: int


class _Kept:
    """The shared run of one hypervisor and its last listing, with the change count it was read at."""

    def __init__(self) -> None:
        self.run: SharedRun[_Read] = SharedRun()
        self.last: _Read | None = None
        self.refreshing = False
        self.again = False  # asked again while a refresh ran: read once more after it
        self.marked: dict[str, int] = {}  # VMs changed one by one: name -> the number of its last change

    def behind(self, last: _Read) -> list[str]:
        """The VMs changed since ``last`` was read (called holding ``_kept_lock``)."""
        return [name for name, number in self.marked.items() if number > last.marked]

    def read(self, hv: Hypervisor) -> Listing:
        """A listing read now (or by a caller's run that began after this call), kept as the last one."""
        outcome = self.run.get(lambda: _listing(hv))
        with _kept_lock:
            if self.last is None or self.last.at <= outcome.at:  # a slower caller must not put back an older one
                self.last = outcome
                self._forget(outcome.marked)
        return outcome.listing

    def patch(self, hv: Hypervisor, last: _Read) -> Listing:
        """``last`` with the rows of the VMs changed since read again (a VM gone drops its row, a new one gets
        one)."""
        with _kept_lock:  # together: each change up to ``number`` is in ``last`` or among ``names``
            number, names = _marks, self.behind(last)
        rows = {name: lifecycle.list_row(hv, name) for name in names}
        found = sorted([v for v in last.listing[0] if v.name not in rows] +
                       [row for row in rows.values() if row is not None], key=lambda v: v.name)
        outcome = _Read((found, VM_LIST.dump_json(found)), last.seen, last.at, number)
        with _kept_lock:
            if self.last is last:
                self.last = outcome
                self._forget(number)
        return outcome.listing

    def _forget(self, number: int) -> None:
        self.marked = {name: n for name, n in self.marked.items() if n > number}

    def refresh(self, hv: Hypervisor, settle: float = 0.0) -> None:
        """Read a new listing on a thread of its own, ``settle`` seconds from now (one at a time; asked while one
        runs, it runs once more after); callers keep the last one meanwhile."""
        with _kept_lock:
            if self.refreshing:
                self.again = True
                return
            self.refreshing = True

        def work() -> None:
            try:
                while True:
                    time.sleep(settle)  # a change comes in bursts (events, the operation's end): read after it
                    try:
                        self.read(hv)
                    except Exception:  # the next caller reads it itself, and sees the error
                        log.debug("refreshing the VM listing failed", exc_info=True)
                    with _kept_lock:
                        if not self.again:
                            return
                        self.again = False
            finally:
                with _kept_lock:
                    self.refreshing = False

        threading.Thread(target=work, name="vm-listing", daemon=True).start()


_kept: weakref.WeakKeyDictionary[Hypervisor, _Kept] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()
_changes = 0  # bumped by changed(); a listing read before the last bump is not answered again
_marks = 0  # bumped by changed(vm): the number of the last one-VM change


SETTLE_S = 0.01  # after a change, how long the listing waits for the rest of its burst before it is read again


_operations = 0  # operations running: the background read waits for the last one's end
_put_off = False  # a whole read was put off until then


def changed(vm: str | None = None) -> None:
    """Something on a host may have changed: VM ``vm`` only, whose row the next caller reads again; or anything,
    and then the kept listings are not answered again, and each host's is read again in the background, so the
    next caller (often a moment later, e.g. `kvmhub ls` after `kvmhub start`) finds it ready. While an operation
    runs that read waits for the last one's end: the operation's own work (a VM starting) comes first, and callers
    meanwhile read afresh anyway."""
    global _changes, _marks, _put_off
    with _kept_lock:
        if vm is not None:
            _marks += 1
            for entry in _kept.values():
                entry.marked[vm] = _marks
            return
        _changes += 1
        if _operations:
            _put_off = True
            return
    _refresh_all()


def _refresh_all() -> None:
    with _kept_lock:
        entries = list(_kept.items())
    for hv, entry in entries:
        if entry.last is not None:  # hosts nobody listed yet are read when someone asks
            entry.refresh(hv, SETTLE_S)


def operation_started(vm: str | None = None) -> None:
    """An operation starts (on VM ``vm``, when it acts on one): what it changes is not answered from a kept
    listing (see :func:`changed`)."""
    global _operations
    with _kept_lock:
        _operations += 1
    changed(vm)


def operation_ended(vm: str | None = None) -> None:
    """An operation ended: its VM's row (or the whole listing) is read again now that its effect is there, and
    a whole read put off while operations ran is made once the last one ends."""
    global _operations, _put_off
    with _kept_lock:
        _operations -= 1
        put_off = _put_off and not _operations
        if put_off:
            _put_off = False
    changed(vm)
    if put_off and vm is not None:
        _refresh_all()


def _seen(hv: Hypervisor) -> tuple[int, int]:
    """What a kept listing must still match: the changes so far, and the connections the host's hv gave up
    (libvirtd stalled or gone: a listing read before is not answered as if it were current)."""
    return _changes, hv.drops


def _listing(hv: Hypervisor) -> _Read:
    with _kept_lock:  # taken before reading: a change during the read makes it stale
        seen, at, marked = _seen(hv), time.monotonic(), _marks
    found = lifecycle.list_vms(hv)
    return _Read((found, VM_LIST.dump_json(found)), seen, at, marked)


def _usable(hv: Hypervisor) -> tuple[_Kept, _Read, list[str]] | None:
    """The host's entry, its last listing and the VMs changed since, while nothing else changed since it was
    read and it is under ``STALE_S`` old; past ``MAX_AGE_S`` a new one is read in the background for the callers
    after this one."""
    entry = _kept.get(hv)
    last = entry.last if entry is not None else None
    if entry is None or last is None or last.seen != _seen(hv):
        return None
    age = time.monotonic() - last.at
    if age > STALE_S:
        return None
    if age > MAX_AGE_S:
        entry.refresh(hv)
    with _kept_lock:
        behind = entry.behind(last)
    return entry, last, behind


def kept(hv: Hypervisor) -> Listing | None:
    """The last listing of ``hv`` when it can be answered as it is, without a libvirt call (see :func:`_usable`;
    not when a VM changed since)."""
    usable = _usable(hv)
    return usable[1].listing if usable is not None and not usable[2] else None


def _shared(hv: Hypervisor, fresh: bool) -> Listing:
    if not fresh and (usable := _usable(hv)) is not None:
        kept_entry, last, behind = usable
        return kept_entry.patch(hv, last) if behind else last.listing
    with _kept_lock:
        entry = _kept.get(hv)
        if entry is None:
            entry = _kept[hv] = _Kept()
    return entry.read(hv)


def list_vms(hv: Hypervisor, *, fresh: bool = False) -> list[VMInfo]:
    """:func:`kvmhub.services.vm.lifecycle.list_vms`, shared by the callers asking ``hv`` at the same time (and
    kept while nothing changed, unless ``fresh``)."""
    return list(_shared(hv, fresh)[0])


def list_vms_json(hv: Hypervisor, *, fresh: bool = False) -> bytes:
    """The same listing as JSON (a list of VMInfo), made once for all the callers that shared it."""
    return _shared(hv, fresh)[1]
