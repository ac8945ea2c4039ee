"""Wire types for operations: journalled multi-step work with undo (create, clone, import, rm ...)."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OperationState(enum.StrEnum):
    """Where an operation stands. ``interrupted``: its process died; the next kvmhub process takes it over."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    RECOVERING = "recovering"
    ROLLED_BACK = "rolled-back"
    COMPLETED = "completed"  # an interrupted operation finished by recovery (roll forward)
    NEEDS_REPAIR = "needs-repair"  # recovery could not undo everything: `kvmhub repair` shows what is left


ACTIVE_STATES = frozenset({OperationState.RUNNING, OperationState.RECOVERING})


class StepState(enum.StrEnum):
    """A step is journalled ``pending`` before it acts, ``done`` after; its undo leaves it ``undone``."""

    PENDING = "pending"
    DONE = "done"
    UNDONE = "undone"
    UNDO_FAILED = "undo-failed"


class Recovery(enum.StrEnum):
    """What recovery does with an interrupted operation: take its finished steps back, or finish it."""

    UNDO = "undo"
    FORWARD = "forward"


class StepInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int
    description: str
    action: str | None = None  # a registered action kind; None: undo only possible in the process itself
    params: dict[str, Any] = Field(default_factory=dict)  # what the step made (uuid, volume key, MAC ...)
    state: StepState
    error: str | None = None


class OperationInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str  # e.g. vm.create, image.import, vm.rm
    target: str
    uri: str
    pid: int
    command: str | None = None
    state: OperationState
    recovery: Recovery = Recovery.UNDO
    started: float  # seconds since the epoch
    finished: float | None = None
    phase: str | None = None
    progress_done: int | None = None
    progress_total: int | None = None
    error: dict[str, Any] | None = None
    locks: list[str] = Field(default_factory=list)
    steps: list[StepInfo] = Field(default_factory=list)
    result: Any = None  # what the operation returned, as JSON data (API operations)
    requested_by: str | None = None  # who asked (API operations: the user or token)
