"""Recovering interrupted operations (run by every kvmhub process that finds some) and ``kvmhub repair``."""

from __future__ import annotations

from kvmhub.models.operation import OperationInfo, OperationState
from kvmhub.ops import recovery
from kvmhub.ops.journal import Journal
from kvmhub.reporting import QUIET, Reporter

# every module that registers action handlers (tests/unit/test_action_handlers.py checks none is missing)
from kvmhub.services import undo_actions  # noqa: F401
from kvmhub.services.network import forwards, networks  # noqa: F401
from kvmhub.services.snapshots import snapshots  # noqa: F401
from kvmhub.services.storage import bases, pools  # noqa: F401
from kvmhub.services.templates import make  # noqa: F401
from kvmhub.services.vm import clone, saves  # noqa: F401

__all__ = ["needing_repair", "recover_orphans", "repair"]


def recover_orphans(report: Reporter = QUIET,
                    journal: Journal | None = None) -> list[recovery.Outcome]:
    """Take over every operation whose process died: undo it (or finish it, for rm). Returns what was done."""
    jr = journal or Journal()
    outcomes = []
    for op in jr.orphans():
        outcome = recovery.recover(op, journal=jr, report=report)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def needing_repair(journal: Journal | None = None) -> list[OperationInfo]:
    """Operations whose undo (or finish) could not be completed, with the steps still to do."""
    return (journal or Journal()).needing_repair()


def repair(*, apply: bool, report: Reporter = QUIET,
           journal: Journal | None = None) -> list[recovery.Outcome]:
    """Interrupted operations and those needing repair: what would be undone; carried out when ``apply``."""
    jr = journal or Journal()
    outcomes = recover_orphans(report, jr) if apply else []
    for op in jr.needing_repair():
        if not apply:
            outcomes.append(recovery.Outcome(op, op.state, left=[s.description for s in recovery.plan(op)]))
            continue
        outcome = recovery.recover(op, journal=jr, report=report, claim=False)
        if outcome is not None:
            outcomes.append(outcome)
    if not apply:
        outcomes += [recovery.Outcome(op, OperationState.INTERRUPTED, left=[s.description for s in recovery.plan(op)])
                     for op in jr.orphans()]
    return outcomes
