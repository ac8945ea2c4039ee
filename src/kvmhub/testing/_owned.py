"""What a test host and a test switch share: their dir, owner lock, state record, namespace holder process,
and being stopped when the interpreter exits or gets SIGTERM. Internal to :mod:`kvmhub.testing`."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

from kvmhub.errors import HostProblem
from kvmhub.testing import _holder, _procs

__all__ = ["DAEMON_ENV", "Owned", "check"]

# The daemons get a clean environment: nothing of the caller's (LIBVIRT_DEFAULT_URI, ...) leaks in.
DAEMON_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
# Paths end up in libvirt config strings; keep them to characters that need no quoting.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
# Host names become dir names and (with a "v" prefix) interface names of at most 15 characters.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,13}")

# The namespace holder: a stdlib-only script run by unshare (see its docstring).
_HOLDER = [sys.executable, "-I", str(Path(_holder.__file__).resolve())]


class _Holder:
    """An ``unshare`` process whose child keeps namespaces alive; reads its stdout markers with deadlines."""

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=DAEMON_ENV,
                start_new_session=True,  # a Ctrl-C in the terminal must not reach the holder first
            )
        self.log = log
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, marker: str, deadline: float) -> list[str]:
        """Wait for a line starting with ``marker`` on the holder's stdout and return its other words.

        Raises HostProblem (with the holder's stderr) if the holder exits first or time runs out.
        """
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if words[:1] == [marker]:
                    return words[1:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostProblem(
                    f"namespace holder did not report {marker}",
                    cause="setup inside the namespace hangs",
                    original=_procs.tail(self.log),
                )
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(5)
                    raise HostProblem(
                        f"namespace holder exited ({code}) before {marker}",
                        cause="a mount, ip or daemon start command failed inside the namespace",
                        original=_procs.tail(self.log),
                    )
                self._buf += chunk

    def send(self, line: str) -> None:
        """Write one line to the holder's stdin."""
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()

    def close(self) -> None:
        """Close our pipe ends and reap the process (it must already be dead or dying)."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


class Owned:
    """Common life of a host or switch: its dir, owner lock, state record, holder and exit registration."""

    kind = "owned"

    def __init__(self, base: Path | None, name: str | None) -> None:
        if name is not None and not _NAME.fullmatch(name):
            raise HostProblem(f"bad test host name {name!r}", hint="use 1-14 of [A-Za-z0-9_-]")
        self.base = _procs.base_dir(base)
        self.id = name or f"{self.kind[0]}{uuid.uuid4().hex[:10]}"
        self.dir = self.base / self.id
        self.netns: str | None = None
        self._holder: _Holder | None = None
        self._lock_fd: int | None = None
        self._inner_pid: int | None = None  # the holder script, unshare's child
        self._owner_pid = os.getpid()
        self._state: dict[str, Any] = {}

    @property
    def holder_pid(self) -> int:
        """Pid of a process inside the namespaces (the ``unshare`` parent); valid while running."""
        if self._holder is None:
            raise HostProblem(f"test {self.kind} {self.id} is not running", hint="call start() first")
        return self._holder.pid

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._holder is not None and self._holder.proc.poll() is None

    def _claim_dir(self) -> None:
        if self._lock_fd is not None:
            raise HostProblem(f"test {self.kind} {self.id} is already started")
        if not _SAFE_PATH.match(str(self.dir)):
            raise HostProblem(f"test host dir {self.dir} has characters libvirt config cannot hold")
        # sun_path holds 107 bytes; the longest socket is <dir>/run/libvirt-admin-sock.
        if len(str(self.dir / "run" / "libvirt-admin-sock")) > 107:
            raise HostProblem(
                f"test host dir {self.dir} is too long for a unix socket path",
                hint=f"set {_procs.BASE_ENV} to a shorter directory",
            )
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o711)  # noqa: S103  # traversable so QEMU can reach images in host dirs
        try:
            self.dir.mkdir(mode=0o755)
        except FileExistsError:
            raise HostProblem(f"test {self.kind} dir {self.dir} already exists", hint="pick another name") from None
        self._lock_fd = _procs.take_owner_lock(self.dir)
        self._record(kind=self.kind, id=self.id, dir=str(self.dir), owner_pid=self._owner_pid)
        _register(self)

    def _record(self, **items: Any) -> None:
        self._state.update(items)
        _procs.write_state(self.dir, self._state)

    def _launch(self, unshare: Sequence[str], args: Sequence[str], deadline: float) -> _Holder:
        """Start the holder under ``unshare`` and wait until it reports from inside its new namespaces."""
        argv = ["unshare", *unshare, "--fork", "--kill-child", "--", *_HOLDER, *args]
        self._holder = _Holder(argv, self.dir / "holder.log")
        self._record(holder_pid=self._holder.pid)
        (inner,) = self._holder.expect("NS", deadline)
        self._inner_pid = int(inner)
        # Only now: right after fork, unshare may not have entered its namespaces yet.
        self.netns = _procs.netns_of(self._holder.pid)
        self._record(netns=self.netns, inner_pid=self._inner_pid)
        return self._holder

    def _teardown(self) -> None:
        """Kill every process of the namespace, remove the dir and release the lock."""
        holder = self._holder
        survivors: list[int] = []
        if self.netns is not None:
            # The holder goes last: it reaps the others as they die.
            spare = [pid for pid in (holder.pid if holder else None, self._inner_pid) if pid is not None]
            _procs.sweep_netns(self.netns, term=self._gentle_pids(), spare=spare)
            survivors = _procs.sweep_netns(self.netns)
        if holder is not None:
            with contextlib.suppress(OSError):
                holder.proc.kill()
            holder.close()
        if self.dir.exists() and not survivors:
            survivors = _procs.sweep_cmdline(self.dir)
        if survivors:
            raise HostProblem(
                f"test {self.kind} {self.id}: processes survived SIGKILL: {survivors}",
                hint=f"ps -o pid,stat,args -p {','.join(map(str, survivors))}",
            )
        if self.dir.exists():
            _procs.remove_dir(self.dir, self.base)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._holder = None
        _unregister(self)

    def _gentle_pids(self) -> list[int]:
        return []

    def start(self, timeout: float = 60.0) -> Self:
        """Bring it up; raises HostProblem on failure."""
        raise NotImplementedError

    def stop(self) -> None:
        """Tear down; safe to call twice."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def check(argv: list[str]) -> None:
    """Run a short command; HostProblem with its stderr if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise HostProblem(f"{' '.join(argv)} exited {done.returncode}", original=done.stderr.strip())


# -- stop live hosts when the interpreter exits or gets SIGTERM ------------------------------------------

_LIVE: dict[str, Owned] = {}
_LIVE_LOCK = threading.Lock()
_HOOKED = False


def _register(obj: Owned) -> None:
    global _HOOKED
    with _LIVE_LOCK:
        _LIVE[obj.id] = obj
        if _HOOKED:
            return
        _HOOKED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(obj: Owned) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(obj.id, None)


def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    # Hosts before switches; a forked child must not stop its parent's hosts.
    for obj in sorted(live, key=lambda o: o.kind == "switch"):
        if obj._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                obj.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
