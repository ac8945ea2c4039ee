"""Per-resource locks shared by every kvmhub process on a machine.

A lock is an ``flock`` on a file in kvmhub's private lock directory (see ``paths``), one file per host URI and
resource (``vm/web``, ``image/tiny``, ``network/lab`` ...). Shared locks let many creates use one image while an
``image rm`` waits for them. The holder writes who it is into the file, so a waiter that runs out of time says
which operation, command and pid hold it. The kernel drops a lock when its process dies: no stale locks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from kvmhub.errors import OperationTimeout
from kvmhub.ops.paths import locks_dir, private_dir

DEFAULT_TIMEOUT = 60.0
_POLL_S = 0.05


class LockTimeout(OperationTimeout):
    """Another kvmhub process held a resource longer than the wait allowed."""


@dataclass(frozen=True)
class LockSpec:
    """One resource to lock: ``kind`` (vm, image, network, pool, volume) and its name on the host."""

    kind: str
    name: str
    shared: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


def lock_timeout() -> float:
    """How long to wait for a lock: ``$KVMHUB_LOCK_TIMEOUT`` seconds, else 60."""
    try:
        return float(os.environ.get("KVMHUB_LOCK_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _host_dir(uri: str) -> Path:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return private_dir(locks_dir() / digest)


MAX_QUOTED = 200  # a file name holds 255 bytes; a longer quoted name is replaced by its hash


def _path(uri: str, spec: LockSpec) -> Path:
    # quote() leaves only [A-Za-z0-9_.~-] and %XX: no separators, no dot-only names after the kind prefix
    quoted = quote(spec.name, safe="")
    if len(quoted) > MAX_QUOTED:  # names nothing accepts (they are refused later) still get a lock to be refused under
        quoted = "sha256-" + hashlib.sha256(spec.name.encode("utf-8", "surrogatepass")).hexdigest()
    return _host_dir(uri) / f"{spec.kind}.{quoted}.lock"


def _holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace")
        info = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another kvmhub process"
    op = f"operation {info.get('op')} " if info.get("op") else ""
    return f"{op}({info.get('command') or '?'}, pid {info.get('pid')})"


class _Entry:
    """A lock this process holds: the flock'd descriptor, the thread that took it, how often it re-entered."""

    def __init__(self, fd: int, thread: int) -> None:
        self.fd = fd
        self.thread = thread
        self.count = 1


# flock excludes open files, not threads: threads of one process are kept apart here, and the thread that holds
# a lock may take it again (an operation holding network/lab calls code that locks network/lab itself)
_table_cond = threading.Condition()
_table: dict[str, _Entry] = {}


def _busy(spec: LockSpec, holder: str, timeout: float) -> LockTimeout:
    return LockTimeout(
        f"{spec.label} is busy: held by {holder}",
        cause=f"another kvmhub operation works on {spec.label} and did not finish in {timeout:g} s",
        hint="wait for it to finish and retry; {cmd:ops ls} lists operations", code="lock.timeout",
    )


class Held:
    """The locks one operation holds; released together."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self.labels: list[str] = []

    def release(self) -> None:
        with _table_cond:
            while self._keys:
                key = self._keys.pop()
                entry = _table[key]
                entry.count -= 1
                if entry.count == 0:
                    del _table[key]
                    with contextlib.suppress(OSError):
                        fcntl.flock(entry.fd, fcntl.LOCK_UN)
                    os.close(entry.fd)
            _table_cond.notify_all()
        self.labels.clear()

    def acquire(self, uri: str, spec: LockSpec, *, op_id: str | None, timeout: float) -> None:
        path = _path(uri, spec)
        key = str(path)
        me = threading.get_ident()
        deadline = time.monotonic() + timeout
        with _table_cond:
            while (entry := _table.get(key)) is not None and entry.thread != me:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _busy(spec, f"another operation of this process (pid {os.getpid()})", timeout)
                _table_cond.wait(left)
            if entry is not None:
                entry.count += 1
                self._keys.append(key)
                self.labels.append(spec.label)
                return
            _table[key] = _Entry(-1, me)  # reserve the slot while the flock is taken outside the condition
        try:
            fd = self._flock(path, spec, op_id, deadline, timeout)
        except BaseException:
            with _table_cond:
                del _table[key]
                _table_cond.notify_all()
            raise
        with _table_cond:
            _table[key].fd = fd
        self._keys.append(key)
        self.labels.append(spec.label)

    @staticmethod
    def _flock(path: Path, spec: LockSpec, op_id: str | None, deadline: float, timeout: float) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if spec.shared else fcntl.LOCK_EX
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if time.monotonic() >= deadline:
                    raise _busy(spec, _holder(fd), timeout)
                time.sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        if not spec.shared:
            record = {"op": op_id, "pid": os.getpid(), "command": " ".join(sys.argv[:4]) or sys.executable}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        return fd


@contextlib.contextmanager
def hold(uri: str, specs: Sequence[LockSpec], *, op_id: str | None = None,
         timeout: float | None = None) -> Iterator[Held]:
    """Hold every lock in ``specs`` (taken in a fixed order, so two operations never deadlock)."""
    held = Held()
    wait = lock_timeout() if timeout is None else timeout
    try:
        exclusive = {s.label for s in specs if not s.shared}
        wanted = {s for s in specs if not (s.shared and s.label in exclusive)}  # one flock per file and process
        for spec in sorted(wanted, key=lambda s: (s.kind, s.name)):
            held.acquire(uri, spec, op_id=op_id, timeout=wait)
        yield held
    finally:
        held.release()
