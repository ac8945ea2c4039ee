"""Process, namespace and state-dir helpers behind :mod:`kvmhub.testing.testhost`.

Every test host or switch lives in ``<base>/<id>/``. Its owner holds an exclusive ``flock`` on
``<base>/<id>/owner.lock`` for the host's whole life; the kernel drops that lock when the owner dies (even by
SIGKILL), which is how :func:`cleanup_stale` tells a leftover from a live host without trusting pids.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kvmhub.errors import HostProblem

__all__ = [
    "BASE_ENV",
    "DEFAULT_BASE",
    "base_dir",
    "cleanup_stale",
    "kill_pids",
    "netns_of",
    "pids_in_netns",
    "read_state",
    "sweep_netns",
    "tail",
    "take_owner_lock",
    "write_state",
]

BASE_ENV = "KVMHUB_TESTHOST_BASE"
DEFAULT_BASE = Path("/tmp/kvmhub-testhosts")
STATE_FILE = "state.json"
LOCK_FILE = "owner.lock"
# A dir with no lock file yet is being created by someone; only older ones count as debris.
_YOUNG_SECONDS = 120.0


def base_dir(base: Path | None = None) -> Path:
    """The directory holding every test host's dir (``$KVMHUB_TESTHOST_BASE`` or /tmp/kvmhub-testhosts)."""
    if base is not None:
        return base
    return Path(os.environ.get(BASE_ENV) or DEFAULT_BASE)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} missing)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} empty)"


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat); None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def netns_of(pid: int | str) -> str | None:
    """The network namespace of ``pid`` as the kernel names it (``net:[4026532...]``); None when gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _root_namespaces() -> set[str]:
    """Namespaces that must never be swept: ours and init's."""
    return {ns for ns in (netns_of("self"), netns_of(1)) if ns}


def pids_in_netns(netns: str) -> list[int]:
    """Every live process whose network namespace is ``netns`` (never the root namespace's)."""
    if netns in _root_namespaces():
        raise HostProblem(
            f"refusing to sweep processes of the root network namespace {netns}",
            cause="a test host's recorded namespace is the machine's own",
        )
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me and netns_of(entry.name) == netns:
            found.append(int(entry.name))
    return found


def _alive(pids: Iterable[int]) -> list[int]:
    return [pid for pid in pids if start_time(pid) is not None]


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = _alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _alive(left)
    return left


def kill_pids(pids: Iterable[int], *, term: Iterable[int] = (), grace: float = 5.0) -> list[int]:
    """SIGTERM the ``term`` pids, SIGKILL the rest, then SIGKILL whatever outlives ``grace``.

    Returns the pids still alive at the end (empty unless a process is stuck in the kernel).
    """
    pids = list(pids)
    gentle = [pid for pid in term if pid in pids]
    _signal(gentle, signal.SIGTERM)
    _signal([pid for pid in pids if pid not in gentle], signal.SIGKILL)
    left = _wait_gone(pids, grace)
    _signal(left, signal.SIGKILL)
    return _wait_gone(left, grace)


def sweep_netns(netns: str, *, term: Iterable[int] = (), spare: Iterable[int] = (), grace: float = 5.0) -> list[int]:
    """Kill every process in ``netns`` but ``spare``, rescanning for ones forked meanwhile; return survivors."""
    spare = set(spare)
    left: list[int] = []
    for _ in range(5):
        pids = [pid for pid in pids_in_netns(netns) if pid not in spare]
        if not pids:
            return []
        left = kill_pids(pids, term=term, grace=grace)
        term = ()
    return left


def sweep_cmdline(dir_: Path) -> list[int]:
    """Kill processes with ``dir_`` or a path under it as an argument; fallback when no netns is known."""
    me = os.getpid()
    exact = str(dir_).encode()
    prefix = exact + b"/"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            args = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg == exact or arg.startswith(prefix) for arg in args):
            pids.append(int(entry.name))
    return kill_pids(pids)


def take_owner_lock(dir_: Path) -> int:
    """Create and lock ``dir_/owner.lock``; the returned fd must stay open while the host lives."""
    fd = os.open(dir_ / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise HostProblem(f"test host dir {dir_} is locked by another process", original=str(exc)) from exc
    return fd


def write_state(dir_: Path, state: dict[str, Any]) -> None:
    """Atomically (re)write ``dir_/state.json``."""
    tmp = dir_ / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(dir_ / STATE_FILE)


def read_state(dir_: Path) -> dict[str, Any]:
    """``dir_/state.json`` as a dict, empty when missing or unreadable."""
    try:
        data = json.loads((dir_ / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remove_dir(dir_: Path, base: Path) -> None:
    """Remove a host dir, refusing anything that is not a direct child of ``base``."""
    if dir_.parent.resolve() != base.resolve() or dir_.name.startswith("."):
        raise HostProblem(f"refusing to remove {dir_}: not a test host dir under {base}")
    shutil.rmtree(dir_, ignore_errors=True)
    if dir_.exists():
        raise HostProblem(f"could not remove test host dir {dir_}", hint=f"rm -rf {dir_}")


def destroy_recorded(dir_: Path, state: dict[str, Any], base: Path) -> list[int]:
    """Kill what a host/switch record says it started, then remove its dir; return survivors."""
    netns = state.get("netns")
    survivors = []
    if isinstance(netns, str) and netns.startswith("net:[") and netns not in _root_namespaces():
        survivors = sweep_netns(netns, grace=3.0)
    # The holder may have died before its netns was recorded: its argv names the dir.
    survivors += sweep_cmdline(dir_)
    if not survivors:
        remove_dir(dir_, base)
    return survivors


def cleanup_stale(base: Path | None = None) -> list[str]:
    """Remove leftovers of test hosts and switches whose owning process is gone.

    For each ``<base>/<id>/`` whose owner lock can be taken (its owner died, e.g. a crashed or SIGKILLed test
    run), kill every process in its network namespace (libvirtd, virtlogd, dnsmasq, QEMU, the holder) and
    remove the dir. Live hosts of other processes are left alone. Returns the ids cleaned.

    Raises :class:`HostProblem` when a leftover process cannot be killed.
    """
    root = base_dir(base)
    if not root.is_dir():
        return []
    cleaned = []
    stuck: list[int] = []
    for dir_ in sorted(root.iterdir()):
        if not dir_.is_dir() or dir_.name.startswith("."):
            continue
        lock = dir_ / LOCK_FILE
        if not lock.exists():
            with contextlib.suppress(OSError):
                if time.time() - dir_.stat().st_mtime > _YOUNG_SECONDS:
                    stuck += destroy_recorded(dir_, {}, root)
                    cleaned.append(dir_.name)
            continue
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live owner holds it
            stuck += destroy_recorded(dir_, read_state(dir_), root)
            cleaned.append(dir_.name)
        finally:
            os.close(fd)
    if stuck:
        raise HostProblem(
            f"stale test host processes survived SIGKILL: {sorted(stuck)}",
            cause="processes stuck in the kernel (D state)",
            hint=f"ps -o pid,stat,args -p {','.join(map(str, sorted(stuck)))}",
        )
    return cleaned
