"""The operations journal as library mode reads it: recent operations, one by id prefix (whether any was
interrupted: :mod:`kvmhub.services.orphans`)."""

from __future__ import annotations

from kvmhub.models.operation import OperationInfo
from kvmhub.ops.journal import Journal


def recent(limit: int) -> list[OperationInfo]:
    """The ``limit`` latest operations, newest first."""
    return Journal().recent(limit)


def find(prefix: str) -> list[OperationInfo]:
    """The operations whose id starts with ``prefix``."""
    return Journal().find(prefix)

