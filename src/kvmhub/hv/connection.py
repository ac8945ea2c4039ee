"""The one door to libvirt: URI resolution, bounded calls, keepalive, reconnect, error translation.

Every libvirt call kvmhub makes goes through :meth:`Hypervisor.call`, which runs it on a daemon
thread and waits at most ``timeout`` seconds, so a stalled libvirtd gives a clear
:class:`~kvmhub.errors.OperationTimeout` instead of a frozen CLI or server.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import libvirt

from kvmhub.errors import HostProblem, KvmhubError, OperationTimeout
from kvmhub.hv.errors import translate

T = TypeVar("T")

DEFAULT_URI = "qemu:///system"
DEFAULT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

_event_loop_lock = threading.Lock()
_event_loop_started = False
# calls that ran out of time but may still land (libvirt has no way to abort a call in flight)
_stray_lock = threading.Lock()
_stray: set[threading.Thread] = set()
SETTLE_TIMEOUT = 30.0


def resolve_uri(uri: str | None = None) -> str:
    """The URI to use: the explicit one, else $KVMHUB_URI, else qemu:///system."""
    return uri or os.environ.get("KVMHUB_URI") or DEFAULT_URI


def is_local_uri(uri: str) -> bool:
    """True when the URI's daemon runs on this machine (no host part, or a unix socket transport)."""
    parts = urlsplit(uri)
    return not parts.hostname or "+unix" in parts.scheme


def host_files_here(uri: str) -> bool:
    """True when the files of the libvirt host at ``uri`` can be reached from here: its daemon runs on this machine
    and is not libvirt's test driver (which has no files)."""
    return is_local_uri(uri) and not uri.startswith("test:")


def host_root() -> str:
    """Where this host's file system is seen from here ('' = as is; a test host sets its own)."""
    return os.environ.get("KVMHUB_HOST_ROOT", "").rstrip("/")


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; kvmhub reports them itself."""


def start_event_loop() -> None:
    """Run libvirt's default event loop on a daemon thread (needed for keepalive, events, streams)."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


class _Worker:
    """A daemon thread that runs bounded calls one after another (a new thread per call costs ~1 ms)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="libvirt-call", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            job()
            del job  # an idle worker must not keep the last call's libvirt objects (and their connection) alive


_IDLE_MAX = 16
_idle_lock = threading.Lock()
_idle: list[_Worker] = []
os.register_at_fork(after_in_child=_idle.clear)  # a child has none of the parent's threads


def _take_worker() -> _Worker:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return _Worker()


def _give_back(worker: _Worker) -> None:
    with _idle_lock:
        if len(_idle) < _IDLE_MAX:
            _idle.append(worker)
            return
    worker.jobs.put(None)


def run_bounded(fn: Callable[[], T], timeout: float, what: str, strays: set[threading.Thread] | None = None) -> T:
    """Run fn on a daemon worker thread; raise OperationTimeout if it is not done in `timeout` seconds.

    Daemon threads (not an executor) so a call stuck in a stalled libvirtd never blocks exit; a worker whose
    call timed out is told to end once the call lands, and :meth:`Hypervisor.settle` can wait for it (it is kept
    in ``strays``: the calling connection's, else the process's).
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def job() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    worker = _take_worker()
    worker.thread.name = f"libvirt-call:{what}"
    worker.jobs.put(job)
    try:
        finished = done.wait(timeout)
    except KeyboardInterrupt:
        done.wait(timeout)  # let the call in flight land, so the undo steps see what it made
        _retire(worker, done, strays)
        raise
    if not finished:
        _retire(worker, done, strays)
        raise OperationTimeout(
            f"{what}: no answer from libvirt after {timeout:.0f} s",
            cause="libvirtd (or the QEMU behind it) is stalled or overloaded",
            hint="check the daemon with `virsh version`; restart libvirtd if it does not answer",
            code="libvirt.timeout",
        )
    _give_back(worker)
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _retire(worker: _Worker, done: threading.Event, strays: set[threading.Thread] | None) -> None:
    """Back to the idle workers if its call landed; else it ends after the call, counted as a stray till then."""
    if done.is_set():
        _give_back(worker)
        return
    worker.jobs.put(None)
    with _stray_lock:
        (_stray if strays is None else strays).add(worker.thread)


class Hypervisor:
    """A connection to one libvirt host, opened lazily, reopened after libvirtd restarts."""

    def __init__(self, uri: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.uri = resolve_uri(uri)
        self._strays: set[threading.Thread] = set()  # this connection's calls that timed out and may still land
        self.timeout = timeout
        self._conn: libvirt.virConnect | None = None
        self._opening: _Attempt | None = None
        self._lock = threading.Lock()
        self.drops = 0  # connections given up (timed out, lost, closed by libvirtd): what was read may be stale

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def is_local(self) -> bool:
        return is_local_uri(self.uri)

    @property
    def conn(self) -> libvirt.virConnect:
        """The open connection; opens (or reopens) it, bounded by CONNECT_TIMEOUT (or the call timeout if shorter).

        One thread opens it; threads asking meanwhile share that attempt's outcome, so against a stalled daemon
        every caller gets its error within one bound rather than one bound per caller before it.
        """
        with self._lock:
            if self._conn is not None:
                return self._conn
            attempt, leader = self._opening, self._opening is None
            if attempt is None:
                attempt = self._opening = _Attempt(f"connecting to {self.uri}")
        limit = min(CONNECT_TIMEOUT, self.timeout)
        if not leader:
            return attempt.outcome(limit)

        def opened() -> libvirt.virConnect:
            conn = self._open()
            if attempt.abandoned:  # it landed after its caller gave up: nobody else would ever close it
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            return conn

        try:
            start_event_loop()
            conn = run_bounded(opened, limit, f"connecting to {self.uri}", self._strays)
        except BaseException as exc:
            attempt.abandoned = True
            with self._lock:
                self._opening = None
            attempt.settle(error=exc if isinstance(exc, Exception) else HostProblem(f"connecting to {self.uri}: "
                                                                                    "interrupted"))
            raise
        with self._lock:
            self._conn, self._opening = conn, None
        attempt.settle(conn=conn)
        return conn

    def _open(self) -> libvirt.virConnect:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            known = translate(exc, f"connecting to {self.uri}")
            if known.code == "failed" and _transport_broke(exc):
                raise HostProblem(
                    f"connecting to {self.uri}: libvirtd is not reachable",
                    cause="libvirtd closed the connection while it was being opened (it stopped or restarted)",
                    hint="retry; if it persists check `virsh -c URI version` and start libvirtd",
                    original=exc.get_error_message() or str(exc),
                    code="host.libvirtd_unreachable",
                ) from exc
            raise known from exc
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # local test:/// drivers have no keepalive; nothing to guard there

        def on_close(closed: libvirt.virConnect, _reason: int, _opaque: object) -> None:
            with self._lock:
                if self._conn is None or self._conn is closed:  # not a newer connection opened since
                    self._conn = None
                    self.drops += 1

        try:
            conn.registerCloseCallback(on_close, None)
        except libvirt.libvirtError:
            pass
        return conn

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> bool:
        """Wait for calls that timed out but may still land, so an undo runs after them; False if some remain."""
        deadline = time.monotonic() + timeout
        for strays in (self._strays, _stray):  # this connection's calls, and those made for no connection
            with _stray_lock:
                threads = list(strays)
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
                if not thread.is_alive():
                    with _stray_lock:
                        strays.discard(thread)
        with _stray_lock:
            return not self._strays and not _stray

    def _drop(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self.drops += 1
        if conn is not None:
            try:
                threading.Thread(target=conn.close, daemon=True).start()
            except Exception:  # noqa: S110 - closing a dead connection is best effort
                pass

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        what: str,
        timeout: float | None = None,
        retry: bool = False,
        reconnect: bool = True,
    ) -> T:
        """Run one libvirt call bounded by a timeout, translating libvirt errors.

        `fn` is called as fn(*args); pass bound methods of libvirt objects or lambdas.
        `retry=True` (read-only calls only) makes the call again when libvirt lost its error's reason, and
        reconnects and retries once when the connection died (unless `reconnect=False`: a call on an object of
        the old connection, such as a domain, would fail the same way).

        Raises OperationTimeout, HostProblem (connection lost), or the translated kvmhub error.
        """
        limit = self.timeout if timeout is None else timeout
        try:
            return run_bounded(lambda: self._invoke(fn, args, what, retry), limit, what, self._strays)
        except OperationTimeout:
            self._drop()
            raise
        except _ConnectionLost as lost:
            self._drop()
            if retry and reconnect:
                again = self._rebind(fn)  # a bound method of the dead connection would fail the same way
                return run_bounded(lambda: self._invoke(again, args, what), limit, what, self._strays)
            raise HostProblem(
                f"{what}: lost the connection to libvirtd",
                cause="libvirtd restarted or stopped during the call",
                hint="retry; if it persists check `virsh -c URI version` and start libvirtd",
                original=lost.original,
                code="host.libvirtd_unreachable",
            ) from None

    def _rebind(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` on a fresh connection when it is a method of the old one (closures look up ``conn`` anew)."""
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, libvirt.virConnect):
            fresh: Callable[..., T] = getattr(self.conn, fn.__name__)
            return fresh
        return fn

    def _invoke(self, fn: Callable[..., T], args: tuple[Any, ...], what: str, retry: bool = False) -> T:
        try:
            try:
                return fn(*args)
            except libvirt.libvirtError as lost:
                if not retry or lost.get_error_code() is not None:
                    raise
                # libvirt keeps a call's error per thread, and every libvirt function clears it: a libvirt object
                # the garbage collector freed in this thread after the call failed took the reason away. A
                # read-only call is made again for it.
                del lost
                return fn(*args)
        except libvirt.libvirtError as exc:
            conn = self._conn
            alive = conn is not None and not _transport_broke(exc)  # None: closed meanwhile by the close callback
            if alive and conn is not None:
                try:
                    alive = bool(conn.isAlive())
                except libvirt.libvirtError:
                    alive = False
            if not alive:
                raise _ConnectionLost(exc.get_error_message() or str(exc)) from exc
            raise translate(exc, what) from exc

    @contextlib.contextmanager
    def twin(self) -> Iterator[Hypervisor]:
        """A second connection to the same host, closed on leaving, for calls that must not wait behind a long
        call on this one (measured: while a restore runs, libvirt answers nothing else on its connection). The
        test driver keeps its state per connection, so there this connection itself is given."""
        if self.uri.startswith("test:"):
            yield self
            return
        other = Hypervisor(self.uri, timeout=self.timeout)
        try:
            yield other
        finally:
            other.close()

    def close(self) -> None:
        """Close the connection (bounded; a stalled daemon cannot block it)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                run_bounded(conn.close, 5.0, "closing the libvirt connection")
            except (KvmhubError, libvirt.libvirtError):
                pass


def _transport_broke(exc: libvirt.libvirtError) -> bool:
    """True when the error is the RPC socket failing (reset, end of file, closed), not the call refused."""
    return exc.get_error_domain() == libvirt.VIR_FROM_RPC and exc.get_error_code() in (
        libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_NO_CONNECT)


class _ConnectionLost(Exception):
    def __init__(self, original: str) -> None:
        super().__init__(original)
        self.original = original


class _Attempt:
    """One opening of a connection, whose outcome every thread that asked for the connection meanwhile shares."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.abandoned = False  # the opening thread gave up waiting for libvirt.open
        self._done = threading.Event()
        self._conn: libvirt.virConnect | None = None
        self._error: BaseException | None = None

    def settle(self, conn: libvirt.virConnect | None = None, error: BaseException | None = None) -> None:
        self._conn, self._error = conn, error
        self._done.set()

    def outcome(self, timeout: float) -> libvirt.virConnect:
        """The connection the attempt opened; its error; or OperationTimeout after ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise OperationTimeout(
                f"{self.what}: no answer from libvirt after {timeout:.0f} s",
                cause="libvirtd (or the QEMU behind it) is stalled or overloaded",
                hint="check the daemon with `virsh version`; restart libvirtd if it does not answer",
                code="libvirt.timeout",
            )
        if self._error is not None:
            raise self._error
        assert self._conn is not None
        return self._conn
