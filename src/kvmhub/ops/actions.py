"""Undo and roll-forward actions that outlive the process that planned them.

An :class:`Action` is a kind (``volume.delete``, ``domain.undefine`` ...) plus JSON parameters naming exactly what
a step made (a UUID, a volume key, a MAC). Handlers are registered by kind (``services/undo_actions.py``), so the
process that made something and a later process recovering after a crash run the same code. Every handler checks
identity (the UUID, the key) before it removes anything and treats "already gone" as done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kvmhub.errors import OperationFailed

if TYPE_CHECKING:
    from kvmhub.hv import Hypervisor


@dataclass
class Context:
    """What a handler acts on: the host's libvirt connection and where its files are seen from here."""

    hv: Hypervisor
    host_root: str = ""

    def path(self, host_path: str) -> str:
        return f"{self.host_root}{host_path}" if self.host_root else host_path


@dataclass
class Action:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


class StepLog(Protocol):
    """What a step registers its undo with: an Operation (journalled) or an Undo (in-process)."""

    def add(self, description: str, undo: Action | Callable[[], object] | None = None) -> None: ...

    def made(self, **params: Any) -> None: ...


Handler = Callable[[Context, dict[str, Any]], None]

_HANDLERS: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    """Decorator: ``fn`` carries out actions of ``kind``."""
    def deco(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn

    return deco


def known(kind: str) -> bool:
    return kind in _HANDLERS


def run(ctx: Context, action: Action) -> None:
    """Carry out one action. Raises OperationFailed for an unknown kind, or the handler's error."""
    handler = _HANDLERS.get(action.kind)
    if handler is None:
        raise OperationFailed(f"no handler for action {action.kind!r}",
                              cause="the kvmhub that wrote this journal entry knows an action this one does not")
    handler(ctx, action.params)
