"""What the routers share: the answer for work started as an operation (202 + Location)."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from kvmhub.models import OperationInfo

OPERATIONS = "/api/v1/operations"
# what a name in a path may hold: libvirt takes no NUL, and control characters name nothing anyone made
NAME_CHARS = r"^[^\x00-\x1f\x7f]+$"
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "started: the operation to follow (also in the Location header)"},
}


def accepted(response: Response, op: OperationInfo) -> OperationInfo:
    """Answer 202 with the operation and its address."""
    response.status_code = 202
    response.headers["Location"] = f"{OPERATIONS}/{op.id}"
    return op
