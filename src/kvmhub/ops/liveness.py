"""Whether the process that wrote an operation still runs, and whether any operation lost its process.

Light on imports (no models, no pathlib): the CLI asks :func:`orphaned` before every command.
"""

from __future__ import annotations

import os
import sqlite3

# OperationState.RUNNING and RECOVERING (kvmhub.models.operation.ACTIVE_STATES), by value
ACTIVE = ("running", "recovering")


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            raw = stat.read()
    except OSError:
        return None
    # the command name in field 2 may hold spaces and parentheses: split after its closing one
    return raw.rsplit(")", 1)[1].split()[19]


def alive(pid: int, started: str | None) -> bool:
    """True while the process that wrote an operation still runs (same pid, same start time)."""
    now = process_start(pid)
    return now is not None and (started is None or now == started)


def orphaned(db: str | os.PathLike[str]) -> bool:
    """True when the journal at ``db`` has an active operation whose process is gone (read-only; a missing or
    not yet migrated journal has none)."""
    if not os.path.exists(db):
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=15.0)
    except sqlite3.Error:
        return True  # unreadable here: let the journal itself say why
    try:
        rows = conn.execute("SELECT pid, pid_start FROM operations WHERE state IN (?, ?)", ACTIVE).fetchall()
    except sqlite3.OperationalError as exc:
        return "no such table" not in str(exc)
    finally:
        conn.close()
    return any(not alive(pid, started) for pid, started in rows)
