"""The operations journal, locks, in-process undo and recovery of operations whose process died."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmhub.errors import HostProblem
from kvmhub.hv import Hypervisor
from kvmhub.models import OperationState, Recovery, StepState
from kvmhub.ops import actions, journal, locks, recovery
from kvmhub.ops.cancel import Cancelled, CancelToken
from kvmhub.ops.journal import Journal
from kvmhub.ops.locks import LockSpec, LockTimeout, hold
from kvmhub.ops.operation import Operation

CALLS: list[tuple[str, Any]] = []


@actions.register("test.record")
def _record(_ctx: actions.Context, p: dict[str, Any]) -> None:
    CALLS.append(("record", p["n"]))


@actions.register("test.fail")
def _fail(_ctx: actions.Context, _p: dict[str, Any]) -> None:
    raise HostProblem("this undo cannot work")


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    CALLS.clear()
    yield tmp_path / "state"


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    with Hypervisor("test:///default") as conn:
        yield conn


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_journal_is_private_and_versioned(state: Path) -> None:
    Journal().recent()
    db = state / "kvmhub.db"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT version FROM schema_version").fetchone() == (len(journal.MIGRATIONS),)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_journal_from_a_newer_kvmhub_is_refused(state: Path) -> None:
    state.mkdir(mode=0o700)
    raw = sqlite3.connect(state / "kvmhub.db")
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (99)")
    raw.commit()
    raw.close()
    code = ("import sys; from kvmhub.ops.journal import Journal\n"
            "try:\n    Journal().recent()\nexcept Exception as e:\n    print(e); sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "KVMHUB_STATE_DIR": str(state)})
    assert proc.returncode == 3 and "newer kvmhub (schema 99)" in proc.stdout


def test_failed_operation_undoes_newest_first_and_is_recorded(hv: Hypervisor) -> None:
    with pytest.raises(RuntimeError), Operation(hv, "test.op", "t1") as op:
        for n in (1, 2, 3):
            op.add(f"step {n}", actions.Action("test.record", {"n": n}))
        raise RuntimeError("boom")
    assert CALLS == [("record", 3), ("record", 2), ("record", 1)]
    rec = Journal().get(op.id)
    assert rec is not None and rec.state is OperationState.FAILED and (rec.error or {}).get("message") == "boom"
    assert [s.state for s in rec.steps] == [StepState.UNDONE] * 3


def test_success_keeps_everything(hv: Hypervisor) -> None:
    with Operation(hv, "test.op", "t2") as op:
        op.add("made", actions.Action("test.record", {"n": 1}))
        op.made(key="/pool/vol")
        op.success()
    rec = Journal().get(op.id)
    assert CALLS == [] and rec is not None and rec.state is OperationState.SUCCEEDED
    assert rec.steps[0].params == {"n": 1, "key": "/pool/vol"} and rec.steps[0].state is StepState.DONE


def test_ctrl_c_cancels_and_a_cancel_token_stops_before_the_next_step(hv: Hypervisor) -> None:
    with pytest.raises(KeyboardInterrupt), Operation(hv, "test.op", "t3") as op:
        op.add("one", actions.Action("test.record", {"n": 1}))
        raise KeyboardInterrupt
    assert Journal().get(op.id).state is OperationState.CANCELLED  # type: ignore[union-attr]
    token = CancelToken()
    with pytest.raises(Cancelled), Operation(hv, "test.op", "t4", cancel=token) as op2:
        op2.add("one", actions.Action("test.record", {"n": 1}))
        token.cancel()
        op2.add("two", actions.Action("test.record", {"n": 2}))
    assert CALLS == [("record", 1), ("record", 1)]
    assert Journal().get(op2.id).state is OperationState.CANCELLED  # type: ignore[union-attr]


def _orphan(kind: str, steps: list[tuple[str | None, dict[str, Any], StepState]],
            rec: Recovery = Recovery.UNDO) -> str:
    """An operation as a process killed mid-way leaves it."""
    jr = Journal()
    op_id = f"dead{len(jr.recent(1000))}"
    jr.begin(op_id, kind, "x", "test:///default", "", "kvmhub test", rec, [])
    for n, (action, params, st) in enumerate(steps, 1):
        jr.add_step(op_id, n, f"step {n}", action, params)
        jr.update_step(op_id, n, state=st)
    with journal.transaction(jr.db) as db:
        db.execute("UPDATE operations SET pid=?, pid_start=NULL WHERE id=?", (_dead_pid(), op_id))
    return op_id


def test_recovery_undoes_a_dead_process_operation_once() -> None:
    op_id = _orphan("test.op", [("test.record", {"n": 1}, StepState.DONE),
                                ("test.record", {"n": 2}, StepState.PENDING)])
    assert [o.id for o in recovery.orphans()] == [op_id]
    outcome = recovery.recover(recovery.orphans()[0])
    assert outcome is not None and outcome.state is OperationState.ROLLED_BACK
    assert CALLS == [("record", 2), ("record", 1)]  # the pending step too: it may have acted before the kill
    assert recovery.orphans() == []
    assert Journal().get(op_id).state is OperationState.ROLLED_BACK  # type: ignore[union-attr]


def test_recovery_finishes_a_forward_operation() -> None:
    _orphan("test.rm", [("test.record", {"n": 1}, StepState.DONE), ("test.record", {"n": 2}, StepState.PENDING),
                        ("test.record", {"n": 3}, StepState.PENDING)], Recovery.FORWARD)
    outcome = recovery.recover(recovery.orphans()[0])
    assert outcome is not None and outcome.state is OperationState.COMPLETED
    assert CALLS == [("record", 2), ("record", 3)]


def test_what_recovery_cannot_undo_is_left_for_repair() -> None:
    op_id = _orphan("test.op", [("test.record", {"n": 1}, StepState.DONE), (None, {}, StepState.DONE),
                                ("test.fail", {}, StepState.DONE)])
    outcome = recovery.recover(recovery.orphans()[0])
    assert outcome is not None and outcome.state is OperationState.NEEDS_REPAIR
    assert CALLS == [("record", 1)]
    assert any("cannot undo this step by itself" in x for x in outcome.left)
    assert any("this undo cannot work" in x for x in outcome.left)
    assert [o.id for o in Journal().needing_repair()] == [op_id]


def test_a_live_operation_is_not_taken_over(hv: Hypervisor) -> None:
    with Operation(hv, "test.op", "alive") as op:
        op.add("one", actions.Action("test.record", {"n": 1}))
        assert recovery.orphans() == []
        op.success()


def _hold_in_child(state: str, ready: Any, release: Any) -> None:
    os.environ["KVMHUB_STATE_DIR"] = state
    with hold("test:///default", [LockSpec("vm", "web")], op_id="op-child"):
        ready.set()
        release.wait(30)


def test_a_busy_lock_names_its_holder(state: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_in_child, args=(str(state), ready, release))
    child.start()
    try:
        assert ready.wait(30)
        start = time.monotonic()
        with pytest.raises(LockTimeout) as busy, hold("test:///default", [LockSpec("vm", "web")], timeout=0.5):
            pass
        assert time.monotonic() - start < 5
        assert "vm/web is busy" in busy.value.message and "op-child" in busy.value.message
        assert f"pid {child.pid}" in busy.value.message and busy.value.code == "lock.timeout"
        with hold("test:///default", [LockSpec("vm", "other")], timeout=0.5):
            pass  # another resource is free meanwhile
    finally:
        release.set()
        child.join(30)
    with hold("test:///default", [LockSpec("vm", "web")], timeout=5):
        pass  # released when its holder ended


def test_locks_reenter_in_a_thread_and_exclude_other_threads() -> None:
    spec = [LockSpec("network", "lab")]
    with hold("test:///default", spec), hold("test:///default", spec, timeout=0.5):
        got: list[str] = []

        def other() -> None:
            try:
                with hold("test:///default", spec, timeout=0.3):
                    got.append("took it")
            except LockTimeout:
                got.append("busy")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert got == ["busy"]


def test_shared_locks_coexist_and_names_cannot_escape(state: Path) -> None:
    specs = [LockSpec("image", "tiny", shared=True)]
    with hold("test:///default", specs), hold("test:///default", [LockSpec("image", "../../etc/passwd")]):
        pass
    files = [p.name for p in (state / "locks").rglob("*.lock")]
    assert "image.tiny.lock" in files and all("/" not in f for f in files)
    assert not Path("/etc/passwd.lock").exists()
    assert locks.lock_timeout() == locks.DEFAULT_TIMEOUT


def test_a_name_too_long_for_a_file_name_still_gets_its_own_lock(state: Path) -> None:
    long_a, long_b = "\u00e9" * 200 + "a", "\u00e9" * 200 + "b"  # each quotes to ~1200 characters
    with hold("test:///default", [LockSpec("network", long_a)]), hold("test:///default", [LockSpec("network", long_b)]):
        files = [p.name for p in (state / "locks").rglob("network.*.lock")]
    assert len(files) == 2 and all(len(f) < 255 for f in files)


def test_old_finished_operations_are_dropped(hv: Hypervisor) -> None:
    with Operation(hv, "test.op", "old") as old:
        old.success()
    jr = Journal()
    with journal.transaction(jr.db) as db:
        db.execute("UPDATE operations SET finished = finished - ? WHERE id = ?", (journal.KEEP_FINISHED_S + 1, old.id))
    with Operation(hv, "test.op", "new") as new:
        new.success()
    assert jr.get(old.id) is None and jr.get(new.id) is not None

