"""The operations journal: one SQLite database (WAL) that records every operation and its steps before they act.

A step is written ``pending`` with what its undo needs (the UUID, volume, MAC ... it is about to make) before it
acts, and ``done`` after. When a process dies mid-operation, the next kvmhub process finds the operation by its
owner's pid (and that pid's start time, so a reused pid does not count) and takes it over (see ``recovery``).

Schema changes are numbered migrations in :data:`MIGRATIONS`, applied in order and recorded in ``schema_version``.
The same database holds kvmhub's other state about a host (image records), through :func:`connect`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kvmhub.errors import HostProblem
from kvmhub.models.operation import (
    ACTIVE_STATES,
    OperationInfo,
    OperationState,
    Recovery,
    StepInfo,
    StepState,
)
from kvmhub.ops.liveness import alive, process_start
from kvmhub.ops.paths import db_path, private_dir

KEEP_FINISHED_S = 30 * 24 * 3600.0  # finished operations older than this are dropped as new ones begin
BUSY_TIMEOUT_MS = 15000

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE operations (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        uri TEXT NOT NULL,
        host_root TEXT NOT NULL DEFAULT '',
        pid INTEGER NOT NULL,
        pid_start TEXT,
        command TEXT,
        state TEXT NOT NULL,
        recovery TEXT NOT NULL DEFAULT 'undo',
        started REAL NOT NULL,
        finished REAL,
        phase TEXT,
        progress_done INTEGER,
        progress_total INTEGER,
        error TEXT,
        locks TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX operations_state ON operations(state);
    CREATE TABLE steps (
        op_id TEXT NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        description TEXT NOT NULL,
        action TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (op_id, seq)
    );
    """,
    # image records (services/storage/image_records.py), once JSON volumes beside each image
    """
    CREATE TABLE images (
        uri TEXT NOT NULL,
        pool TEXT NOT NULL,
        volume TEXT NOT NULL,
        volume_key TEXT,
        writer TEXT NOT NULL,
        complete INTEGER NOT NULL,
        source TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        checksum_verified TEXT,
        original_format TEXT NOT NULL,
        compression TEXT,
        os TEXT,
        imported TEXT NOT NULL,
        PRIMARY KEY (uri, pool, volume)
    );
    """,
    # the API's operations: what one returned, and who asked for it
    """
    ALTER TABLE operations ADD COLUMN result TEXT;
    ALTER TABLE operations ADD COLUMN requested_by TEXT;
    """,
    # the server's accounts (server/accounts.py) and its audit log (server/audit.py)
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password TEXT NOT NULL,
        created REAL NOT NULL,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        secret_sha256 TEXT NOT NULL,
        role TEXT,
        project TEXT,
        description TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        expires REAL,
        last_used REAL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        secret_sha256 TEXT NOT NULL,
        csrf_sha256 TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        user TEXT,
        role TEXT,
        transport TEXT NOT NULL,
        client TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        kind TEXT,
        target TEXT,
        status INTEGER NOT NULL,
        operation TEXT
    );
    CREATE INDEX audit_time ON audit(time);
    CREATE INDEX audit_user ON audit(user);
    """,
    # projects, their quotas and members (services/projects.py); `default` always exists
    """
    CREATE TABLE projects (
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        max_vms INTEGER,
        max_cpus INTEGER,
        max_memory INTEGER,
        max_disk INTEGER,
        max_networks INTEGER
    );
    CREATE TABLE project_members (
        project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (project, user)
    );
    INSERT INTO projects (name, created) VALUES ('default', 0);
    """,
    # the project an image was imported for
    """
    ALTER TABLE images ADD COLUMN project TEXT;
    """,
    # the project of each network kvmhub made (services/projects.py): libvirt keeps no metadata on networks;
    # a row whose UUID is not the live network's is stale and ignored
    """
    CREATE TABLE network_projects (
        uri TEXT NOT NULL,
        name TEXT NOT NULL,
        uuid TEXT NOT NULL,
        project TEXT NOT NULL,
        PRIMARY KEY (uri, name)
    );
    """,
    # the project of each volume kvmhub made with `vol create|clone|upload`: libvirt keeps no metadata on
    # volumes either; a row whose path is not the live volume's is stale and ignored
    """
    CREATE TABLE volume_projects (
        uri TEXT NOT NULL,
        pool TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        project TEXT NOT NULL,
        PRIMARY KEY (uri, pool, name)
    );
    """,
)

_local = threading.local()


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): one writer at a time, waiting up to the busy timeout."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > len(MIGRATIONS):
        raise HostProblem(f"{db_path()} was written by a newer kvmhub (schema {version})",
                          hint="upgrade kvmhub on this host")
    for number in range(version, len(MIGRATIONS)):
        with transaction(db):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))


def connect(path: Path | None = None) -> sqlite3.Connection:
    """The journal database (made on first use, mode 0600, WAL), one connection per thread and path."""
    target = path or db_path()
    cache: dict[str, sqlite3.Connection] = getattr(_local, "dbs", None) or {}
    _local.dbs = cache
    if (db := cache.get(str(target))) is not None:
        return db
    private_dir(target.parent)
    if not target.exists():
        # made with its mode before SQLite opens it; never opened and closed once it exists: closing any descriptor
        # of the file drops every POSIX lock this process holds on it, those of other threads' connections too
        with contextlib.suppress(FileExistsError):
            os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=True)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a process crash loses nothing; only power loss could
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
    except sqlite3.Error as exc:
        raise HostProblem(f"cannot open kvmhub's journal {target}", cause=str(exc),
                          hint=f"check the file system holding {target.parent}") from exc
    cache[str(target)] = db
    return db


class Journal:
    """Reads and writes operation records in one database."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or db_path()

    @property
    def db(self) -> sqlite3.Connection:
        return connect(self.path)

    # -- writing ---------------------------------------------------------------------------------------

    def begin(self, op_id: str, kind: str, target: str, uri: str, host_root: str, command: str | None,
              recovery: Recovery, locks: list[str], requested_by: str | None = None) -> None:
        """Record a running operation. A running record this process already wrote under ``op_id`` (the API
        announces an operation before its work starts) is taken over: it gets the operation's kind, locks and
        recovery."""
        pid = os.getpid()
        with transaction(self.db) as db:
            db.execute(
                "INSERT INTO operations (id, kind, target, uri, host_root, pid, pid_start, command, state, recovery,"
                " started, locks, requested_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, target=excluded.target, uri=excluded.uri,"
                " host_root=excluded.host_root, recovery=excluded.recovery, locks=excluded.locks"
                " WHERE operations.pid=excluded.pid AND operations.state=excluded.state",
                (op_id, kind, target, uri, host_root, pid, process_start(pid), command, OperationState.RUNNING,
                 recovery, time.time(), json.dumps(locks), requested_by),
            )
            # the journal prunes itself as it grows: finished operations older than KEEP_FINISHED_S go
            db.execute("DELETE FROM operations WHERE finished IS NOT NULL AND finished < ? AND state NOT IN (?, ?)",
                       (time.time() - KEEP_FINISHED_S, *(str(s) for s in ACTIVE_STATES)))

    def add_step(self, op_id: str, seq: int, description: str, action: str | None, params: dict[str, Any]) -> None:
        with transaction(self.db) as db:
            db.execute("INSERT INTO steps (op_id, seq, description, action, params, state) VALUES (?,?,?,?,?,?)",
                       (op_id, seq, description, action, json.dumps(params), StepState.PENDING))

    def update_step(self, op_id: str, seq: int, *, state: StepState | None = None,
                    params: dict[str, Any] | None = None, error: str | None = None) -> None:
        sets, values = [], []
        if state is not None:
            sets.append("state=?")
            values.append(str(state))
        if params is not None:
            sets.append("params=?")
            values.append(json.dumps(params))
        if error is not None:
            sets.append("error=?")
            values.append(error)
        if sets:
            with transaction(self.db) as db:
                db.execute(f"UPDATE steps SET {', '.join(sets)} WHERE op_id=? AND seq=?",  # noqa: S608
                           (*values, op_id, seq))

    def set_phase(self, op_id: str, phase: str | None, done: int | None = None, total: int | None = None) -> None:
        with transaction(self.db) as db:
            db.execute("UPDATE operations SET phase=?, progress_done=?, progress_total=? WHERE id=?",
                       (phase, done, total, op_id))

    def finish(self, op_id: str, state: OperationState, error: dict[str, Any] | None = None) -> None:
        with transaction(self.db) as db:
            db.execute("UPDATE operations SET state=?, finished=?, error=? WHERE id=?",
                       (str(state), time.time(), json.dumps(error) if error else None, op_id))

    def set_result(self, op_id: str, result: Any) -> None:
        """What a finished operation returned (JSON data), for whoever reads the operation later."""
        with transaction(self.db) as db:
            db.execute("UPDATE operations SET result=? WHERE id=?", (json.dumps(result), op_id))

    def claim(self, op: OperationInfo) -> bool:
        """Take over a dead process's operation; False when another process got it first."""
        pid = os.getpid()
        with transaction(self.db) as db:
            row = db.execute("SELECT pid, pid_start, state FROM operations WHERE id=?", (op.id,)).fetchone()
            if row is None or row[2] not in ACTIVE_STATES or alive(row[0], row[1]):
                return False
            db.execute("UPDATE operations SET pid=?, pid_start=?, state=? WHERE id=?",
                       (pid, process_start(pid), str(OperationState.RECOVERING), op.id))
        return True

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, op_id: str) -> OperationInfo | None:
        rows = self._select("WHERE id = ?", (op_id,))
        return rows[0] if rows else None

    def find(self, prefix: str) -> list[OperationInfo]:
        return self._select("WHERE id LIKE ? ORDER BY started", (prefix.replace("%", "") + "%",))

    def recent(self, limit: int = 50) -> list[OperationInfo]:
        return self._select("ORDER BY started DESC LIMIT ?", (limit,), with_steps=False)

    def orphans(self) -> list[OperationInfo]:
        """Operations still marked running whose process is gone, and those left needing repair."""
        active = tuple(str(s) for s in ACTIVE_STATES)
        rows = self.db.execute("SELECT id, pid, pid_start FROM operations WHERE state IN (?, ?)", active).fetchall()
        dead = [r[0] for r in rows if not alive(r[1], r[2])]
        return [op for op_id in dead if (op := self.get(op_id)) is not None]

    def needing_repair(self) -> list[OperationInfo]:
        return self._select("WHERE state = ? ORDER BY started", (str(OperationState.NEEDS_REPAIR),))

    def _select(self, where: str, args: tuple[Any, ...], with_steps: bool = True) -> list[OperationInfo]:
        cols = ("id, kind, target, uri, pid, command, state, recovery, started, finished, phase, progress_done, "
                "progress_total, error, locks, result, requested_by")
        out = []
        for row in self.db.execute(f"SELECT {cols} FROM operations {where}", args).fetchall():  # noqa: S608
            steps: list[StepInfo] = []
            if with_steps:
                steps = [
                    StepInfo(seq=s[0], description=s[1], action=s[2], params=json.loads(s[3]),
                             state=StepState(s[4]), error=s[5])
                    for s in self.db.execute("SELECT seq, description, action, params, state, error FROM steps "
                                             "WHERE op_id=? ORDER BY seq", (row[0],)).fetchall()
                ]
            out.append(OperationInfo(
                id=row[0], kind=row[1], target=row[2], uri=row[3], pid=row[4], command=row[5],
                state=OperationState(row[6]), recovery=Recovery(row[7]), started=row[8], finished=row[9],
                phase=row[10], progress_done=row[11], progress_total=row[12],
                error=json.loads(row[13]) if row[13] else None, locks=json.loads(row[14]), steps=steps,
                result=json.loads(row[15]) if row[15] else None, requested_by=row[16],
            ))
        return out

    def host_root(self, op_id: str) -> str:
        row = self.db.execute("SELECT host_root FROM operations WHERE id=?", (op_id,)).fetchone()
        return str(row[0]) if row else ""
