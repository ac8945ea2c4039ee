"""The audit log: who changed what through the API, from where, and how it ended, in kvmhub's state database.

Rows are written by :class:`kvmhub.server.auditing.AuditLog` (one per mutating request, refused ones included)
and read by ``GET /api/v1/audit`` and ``kvmhub audit``. This module uses no web framework, so the CLI reads the
same table directly.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from kvmhub.errors import InvalidInput
from kvmhub.ops.journal import connect, transaction
from kvmhub.server import accounts

MAX_ROWS = 10000


class AuditEntry(BaseModel):
    """One mutating API call."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    time: float  # seconds since the epoch, when the answer was sent
    user: str | None  # None: the caller presented no valid credentials
    role: str | None
    transport: str  # "unix" or "tcp"
    client: str | None  # the TCP peer's address and port
    method: str
    path: str
    kind: str | None  # the operation's kind (vm.start ...), else the API call's name
    target: str | None
    status: int
    operation: str | None  # the operation's id, for calls answered 202


def record(*, user: str | None, role: str | None, transport: str, client: str | None, method: str, path: str,
           kind: str | None, target: str | None, status: int, operation: str | None) -> None:
    """Append one row."""
    with transaction(connect()) as db:
        db.execute("INSERT INTO audit (time, user, role, transport, client, method, path, kind, target, status,"
                   " operation) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (accounts.now(), user, role, transport, client, method, path, kind, target, status, operation))


def entries(since: float | None = None, user: str | None = None, limit: int = 1000) -> list[AuditEntry]:
    """The latest ``limit`` rows at or after ``since`` (of ``user`` when given), oldest first."""
    rows = connect().execute(
        "SELECT seq, time, user, role, transport, client, method, path, kind, target, status, operation FROM audit"
        " WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR user = ?2) ORDER BY seq DESC LIMIT ?3",
        (since, user, min(limit, MAX_ROWS))).fetchall()
    names = list(AuditEntry.model_fields)
    return [AuditEntry(**dict(zip(names, row, strict=True))) for row in reversed(rows)]


def parse_since(text: str) -> float:
    """A time given as an age (``90s``, ``15m``, ``2h``, ``7d``, ``1w``) or an ISO 8601 date or time (local time
    unless it names a zone), as seconds since the epoch."""
    if text.strip()[-1:].isalpha() and not text.strip().upper().endswith("Z"):
        return accounts.now() - accounts.parse_duration(text)
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"cannot read {text!r} as a time", code="input.invalid",
                           cause="a time is an age like 15m, 2h or 7d, or an ISO date like 2026-01-31T08:00") from None
    return when.timestamp()
