"""VM state changes are journalled operations: each shows in the journal, waits for work that holds the VM,
and `kill` alone never waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import Conflict
from kvmhub.hv import Hypervisor
from kvmhub.models import OperationState
from kvmhub.ops.journal import Journal
from kvmhub.ops.locks import LockSpec, LockTimeout, hold
from kvmhub.services.vm import lifecycle as vms

URI = "test:///default"  # its built-in VM "test" starts out running



@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KVMHUB_LOCK_TIMEOUT", "0.5")
    yield


def _kinds() -> list[tuple[str, OperationState]]:
    return [(op.kind, op.state) for op in reversed(Journal().recent())]


def test_each_state_change_is_a_finished_operation_and_a_refusal_is_a_failed_one() -> None:
    with Hypervisor(URI) as hv:
        vms.pause(hv, "test")
        vms.resume(hv, "test")
        vms.set_autostart(hv, "test", True)
        with pytest.raises(Conflict) as refused:
            vms.resume(hv, "test")
        assert refused.value.code == "vm.wrong_state"
        vms.kill(hv, "test")
        vms.start(hv, "test")
        assert hv.conn.lookupByName("test").isActive() == 1
    assert _kinds() == [("vm.pause", OperationState.SUCCEEDED), ("vm.resume", OperationState.SUCCEEDED),
                        ("vm.autostart", OperationState.SUCCEEDED), ("vm.resume", OperationState.FAILED),
                        ("vm.kill", OperationState.SUCCEEDED), ("vm.start", OperationState.SUCCEEDED)]


def test_a_state_change_waits_for_work_holding_the_vm_but_kill_does_not() -> None:
    holding, release = threading.Event(), threading.Event()

    def other_work() -> None:  # e.g. a snapshot: the VM to itself
        with hold(URI, [LockSpec("vm", "test")], op_id="snap1"):
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=other_work)
    worker.start()
    try:
        assert holding.wait(5)
        with Hypervisor(URI) as hv:
            with pytest.raises(LockTimeout) as busy:
                vms.pause(hv, "test")
            assert "vm/test is busy" in busy.value.message
            assert hv.conn.lookupByName("test").isActive() == 1  # not paused: it never ran
            vms.kill(hv, "test")  # the way out while such work runs
            assert hv.conn.lookupByName("test").isActive() == 0
    finally:
        release.set()
        worker.join(10)
