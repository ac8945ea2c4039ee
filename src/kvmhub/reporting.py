"""How long operations report: `say` takes a line, `progress` takes (what, bytes done, bytes in all)."""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def quiet(_msg: str) -> None:
    """A `say` that drops its lines."""


def no_progress(_what: str, _done: int, _total: int) -> None:
    """A `progress` that drops its reports."""
