"""The projects :mod:`kvmhub.services.owners` read from VMs' metadata, kept on disk beside the journal, so a new
process (each `kvmhub ls`) does not read 500 metadata again: ~80 ms of round trips for 500 VMs.

A cache only: an entry is trusted for as long as the in-process one (``OWNER_TTL_S``), and any trouble with the
file (missing state directory, read-only, locked, damaged) makes it answer nothing, so the metadata is read
instead. Light on imports: `kvmhub ls`'s fast path uses it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable

from kvmhub.ops.location import state_dir_text

FILE_NAME = "owners-cache.db"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS owners (uri TEXT NOT NULL, uuid TEXT NOT NULL, project TEXT NOT NULL,"
           " seen REAL NOT NULL, PRIMARY KEY (uri, uuid))")


def path() -> str:
    return os.path.join(state_dir_text(), FILE_NAME)


def kept(uri: str) -> bool:
    """Whether owners on ``uri`` are kept on disk: not on libvirt's test driver, whose VMs live in one connection."""
    return not uri.startswith("test:")


def load(uri: str, ttl: float) -> dict[str, tuple[str, float]]:
    """UUID -> (project, seen as monotonic time) of the entries for ``uri`` younger than ``ttl`` seconds."""
    conn = _open()
    if conn is None:
        return {}
    now_wall, now = time.time(), time.monotonic()
    try:
        rows = conn.execute("SELECT uuid, project, seen FROM owners WHERE uri=? AND seen>?",
                            (uri, now_wall - ttl)).fetchall()
    except sqlite3.OperationalError:  # locked, or made a moment ago and not yet given its table
        return {}
    except sqlite3.DatabaseError:  # damaged (e.g. by a host crash, as nothing is flushed): started afresh
        _discard(path())
        return {}
    finally:
        conn.close()
    # wall time across processes, monotonic inside one; an entry from the future (the clock went back) is not trusted
    return {str(u): (str(p), now - (now_wall - float(s))) for u, p, s in rows if float(s) <= now_wall}


def save(uri: str, found: Iterable[tuple[str, str]]) -> None:
    """Remember (UUID, project) pairs for ``uri``, seen now."""
    rows = [(uri, uuid, project, time.time()) for uuid, project in found]
    if not rows:
        return
    conn = _open(create=True)
    if conn is None:
        return
    try:
        with conn:
            conn.executemany("INSERT OR REPLACE INTO owners (uri, uuid, project, seen) VALUES (?,?,?,?)", rows)
    except sqlite3.Error:
        pass  # a cache: the next process reads the metadata again
    finally:
        conn.close()


def forget(uuid: str) -> None:
    """Drop every entry for the VM ``uuid`` (it was removed: its UUID may come back, in another project)."""
    conn = _open()
    if conn is None:
        return
    try:
        with conn:
            conn.execute("DELETE FROM owners WHERE uuid=?", (uuid,))
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def _discard(file: str) -> None:
    try:
        os.unlink(file)
    except OSError:
        pass


def _open(create: bool = False) -> sqlite3.Connection | None:
    """The cache, or None when there is none to read (``create``: make it when the state directory exists)."""
    file = path()
    if not create and not os.path.exists(file):
        return None
    if not os.path.isdir(os.path.dirname(file)):
        return None  # the journal makes the state directory, with its permissions; never made here
    try:
        if create:
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))  # as private as the journal
        conn = sqlite3.connect(file, timeout=0.5)
    except (OSError, sqlite3.Error):
        return None
    try:
        # not flushed: a host crash may lose the last writes (entries age out) or damage the file (dropped below)
        conn.execute("PRAGMA synchronous=OFF")
        if create:
            conn.execute(_SCHEMA)
    except sqlite3.Error as exc:
        conn.close()
        if not isinstance(exc, sqlite3.OperationalError):  # damaged: started afresh
            _discard(file)
        return None
    return conn
