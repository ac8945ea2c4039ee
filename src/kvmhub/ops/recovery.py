"""Taking over operations whose process died (kill -9, a crash, a power cut in the middle of a step).

Every kvmhub process calls :func:`orphans` at start (one quick query); when it finds any, the service layer's
``repair`` module loads the action handlers and calls :func:`recover` on each. Recovery claims the operation (one
process wins), takes the operation's locks, and then either undoes its steps newest first (``recovery=undo``) or
carries out the steps it had not finished (``recovery=forward``, e.g. rm). A step whose undo was an in-process
callable, or whose action fails, leaves the operation ``needs-repair``; ``kvmhub repair`` shows and retries those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.models.operation import OperationInfo, OperationState, Recovery, StepInfo, StepState
from kvmhub.ops import actions
from kvmhub.ops.journal import Journal
from kvmhub.ops.locks import LockSpec, hold
from kvmhub.reporting import QUIET, Reporter


@dataclass
class Outcome:
    op: OperationInfo
    state: OperationState
    done: list[str] = field(default_factory=list)  # steps undone (or finished, for forward operations)
    left: list[str] = field(default_factory=list)  # steps that could not be undone/finished, with the reason


def orphans(journal: Journal | None = None) -> list[OperationInfo]:
    """Operations marked running whose process is gone."""
    return (journal or Journal()).orphans()


def plan(op: OperationInfo) -> list[StepInfo]:
    """The steps recovery would act on, in the order it would act."""
    if op.recovery is Recovery.FORWARD:
        return [s for s in op.steps if s.state in (StepState.PENDING, StepState.UNDO_FAILED)]
    return [s for s in reversed(op.steps) if s.state in (StepState.PENDING, StepState.DONE, StepState.UNDO_FAILED)]


def _lock_specs(op: OperationInfo) -> list[LockSpec]:
    specs = []
    for label in op.locks:
        shared = label.startswith("shared:")
        kind, _, name = label.removeprefix("shared:").partition("/")
        specs.append(LockSpec(kind, name, shared))
    return specs


def recover(op: OperationInfo, *, journal: Journal | None = None, hv: Hypervisor | None = None,
            report: Reporter = QUIET, claim: bool = True) -> Outcome | None:
    """Undo (or finish) one operation. None when another process claimed it first.

    ``claim=False`` is for operations already in ``needs-repair`` (their process finished on its own).
    """
    jr = journal or Journal()
    if claim and not jr.claim(op):
        return None
    conn = hv or Hypervisor(op.uri, timeout=30.0)
    ctx = actions.Context(conn, jr.host_root(op.id))
    outcome = Outcome(op, OperationState.ROLLED_BACK)
    verb = "finish" if op.recovery is Recovery.FORWARD else "undo"
    try:
        with hold(op.uri, _lock_specs(op), op_id=op.id):
            for step in plan(op):
                if step.action is None:
                    outcome.left.append(f"{step.description}: kvmhub cannot {verb} this step by itself")
                    continue
                report.phase(f"{op.kind} {op.target} ({op.id}): {verb}: {step.description}")
                try:
                    actions.run(ctx, actions.Action(step.action, dict(step.params)))
                except KvmhubError as exc:
                    outcome.left.append(f"{step.description}: {exc.message}")
                    jr.update_step(op.id, step.seq, state=StepState.UNDO_FAILED,
                                   error=exc.message + (f" ({exc.original})" if exc.original else ""))
                    continue
                outcome.done.append(step.description)
                done = StepState.DONE if op.recovery is Recovery.FORWARD else StepState.UNDONE
                jr.update_step(op.id, step.seq, state=done)
    except KvmhubError as exc:  # the host cannot be reached, or its locks are busy: try again next time
        outcome.left.append(f"could not {verb} now: {exc.message}")
    finally:
        if hv is None:
            conn.close()
    if outcome.left:
        outcome.state = OperationState.NEEDS_REPAIR
    elif op.recovery is Recovery.FORWARD:
        outcome.state = OperationState.COMPLETED
    error = dict(op.error or {})
    error.setdefault("message", f"interrupted: its process (pid {op.pid}) ended before the operation did")
    jr.finish(op.id, outcome.state, error)
    return outcome
