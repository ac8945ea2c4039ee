"""``/audit``: the log of every change made through the API (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kvmhub.server import audit
from kvmhub.server.audit import AuditEntry
from kvmhub.server.auth import ADMIN

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("", response_model=list[AuditEntry], dependencies=[ADMIN])
def list_audit(since: Annotated[str | None, Query(max_length=64, description="an age (15m, 2h, 7d) or an ISO time")]
               = None, user: Annotated[str | None, Query(max_length=64)] = None,
               limit: Annotated[int, Query(ge=1, le=audit.MAX_ROWS)] = 1000) -> list[AuditEntry]:
    """Mutating API calls, oldest first: who, from where, what, the answer's status and operation."""
    return audit.entries(audit.parse_since(since) if since else None, user, limit)
