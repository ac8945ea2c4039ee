"""Wire types for what a running operation reports: its phases, bytes moved, warnings, notes and undo results.

A service emits them into one sink (:class:`kvmhub.reporting.Reporter`); the CLI draws them as a status line
and progress bars, the API streams them as JSON (``kind`` tells them apart).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseEvent(_Event):
    """The operation entered a new phase ("defining the VM", "waiting for network")."""

    kind: Literal["phase"] = "phase"
    name: str


class BytesEvent(_Event):
    """Bytes of one transfer moved so far (an upload, a copy, a conversion)."""

    kind: Literal["bytes"] = "bytes"
    what: str
    done: int = Field(ge=0)
    total: int = Field(ge=0)


class WarningEvent(_Event):
    """Something the user should know that did not stop the operation."""

    kind: Literal["warning"] = "warning"
    message: str
    code: str | None = None


class NoteEvent(_Event):
    """A fact worth a line of its own that is not a phase (an address picked, a file written)."""

    kind: Literal["note"] = "note"
    message: str


class UndoEvent(_Event):
    """One step taken back after a failure or cancel; ``ok`` False when its undo failed (``error`` says why)."""

    kind: Literal["undo"] = "undo"
    step: str
    ok: bool = True
    error: str | None = None


Event = Annotated[PhaseEvent | BytesEvent | WarningEvent | NoteEvent | UndoEvent, Field(discriminator="kind")]
