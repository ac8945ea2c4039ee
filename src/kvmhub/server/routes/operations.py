"""``/operations``: long work started through the API (and the CLI's own, from the shared journal)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from kvmhub.models import OperationInfo
from kvmhub.server.auth import OPERATOR, VIEWER
from kvmhub.server.deps import Ops
from kvmhub.server.routes.common import accepted

router = APIRouter(prefix="/operations", tags=["operations"])
OP_ID = r"^[0-9a-f]{6,32}$"
OpId = Annotated[str, Path(pattern=OP_ID, description="an operation id")]


@router.get("", response_model=list[OperationInfo], dependencies=[VIEWER])
def list_operations(ops: Ops, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[OperationInfo]:
    """The most recent operations, newest first (without their steps)."""
    return ops.journal.recent(limit)


@router.get("/{op_id}", response_model=OperationInfo, dependencies=[VIEWER])
def get_operation(op_id: OpId, ops: Ops) -> OperationInfo:
    """One operation: state, phase, bytes moved, steps, and its result or error once finished."""
    return ops.get(op_id)


@router.get("/{op_id}/wait", response_model=OperationInfo, dependencies=[VIEWER])
def wait_operation(op_id: OpId, ops: Ops, timeout: Annotated[float, Query(ge=0, le=600)] = 30) -> OperationInfo:
    """The operation once finished, or as it stands after ``timeout`` seconds."""
    return ops.wait(op_id, timeout)


@router.delete("/{op_id}", response_model=OperationInfo, status_code=202, dependencies=[OPERATOR])
def cancel_operation(op_id: OpId, ops: Ops, response: Response) -> OperationInfo:
    """Cancel a running operation: it stops and takes back what it made. A finished one is left as is."""
    return accepted(response, ops.cancel(op_id))
