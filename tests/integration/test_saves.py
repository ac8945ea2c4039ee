"""Save/restore through the kvmhub CLI on a private test host: a process running in the guest carries on."""

from __future__ import annotations

import time
from pathlib import Path

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner
from tests.integration.guest import guest_run

COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 1; done"


def _ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=400)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.err


def _counter(host: TestHost, vm: str) -> int:
    deadline = time.monotonic() + 120
    while True:
        try:
            r = guest_run(host, vm, ["cat", "/tmp/counter"], timeout=30)
        except Exception:  # the agent is not answering yet right after a restore
            r = None
        if r is not None:
            assert r.code == 0, f"/tmp/counter is gone (the guest rebooted?): {r.err}"
            return int(r.out.strip())
        assert time.monotonic() < deadline, "the guest agent did not answer after the restore"
        time.sleep(1)


def _start_counter(host: TestHost, vm: str) -> int:
    if guest_run(host, vm, ["test", "-e", "/tmp/counter"]).code != 0:
        r = guest_run(host, vm, ["sh", "-c", f"sh -c '{COUNTER}' >/dev/null 2>&1 &"])
        assert r.code == 0, r.err
        time.sleep(3)
    return _counter(host, vm)


def _state(kvmhub: Runner, vm: str) -> str:
    return str(kvmhub("show", vm, "--json").json()["state"])


def _assert_carried_on(host: TestHost, vm: str, before: int) -> None:
    after = _counter(host, vm)
    # the same process, picked up where the save caught it: neither restarted nor frozen
    assert before <= after < before + 30, (before, after)
    time.sleep(2.5)
    assert _counter(host, vm) > after


def test_managed_save_then_start_resumes_the_running_process(
    booted_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    host, vm = prepared_host, booted_vm
    before = _start_counter(host, vm)
    _ok(kvmhub, "save", vm)
    assert _state(kvmhub, vm) == "shut off"
    assert "Managed save:   yes" in host.virsh("dominfo", vm).stdout  # virsh sees the same saved state
    _ok(kvmhub, "start", vm)  # libvirt resumes a managed save natively
    _assert_carried_on(host, vm, before)

    before = _counter(host, vm)
    _ok(kvmhub, "save", vm)
    assert "running" in _ok(kvmhub, "restore", vm)
    _assert_carried_on(host, vm, before)


def test_save_to_a_file_and_restore_it(booted_vm: str, kvmhub: Runner, prepared_host: TestHost,
                                       tmp_path: Path) -> None:
    host, vm = prepared_host, booted_vm
    before = _start_counter(host, vm)
    state_file = tmp_path / f"{vm}.state"
    _ok(kvmhub, "save", vm, "--file", str(state_file))
    assert _state(kvmhub, vm) == "shut off"
    assert state_file.stat().st_size > 1024 * 1024
    r = kvmhub("save", vm, "--file", str(state_file))
    assert r.code == 4, r.err  # shut off: nothing to save
    r = kvmhub("restore", vm)
    assert r.code == 4 and "no saved state" in r.err
    r = kvmhub("restore", "other-vm", "--file", str(state_file))
    assert r.code in (2, 3), r.err
    assert "paused" in _ok(kvmhub, "restore", vm, "--file", str(state_file), "--paused")
    _ok(kvmhub, "resume", vm)
    _assert_carried_on(host, vm, before)


def test_refusals_name_the_reason(booted_vm: str, kvmhub: Runner, tmp_path: Path) -> None:
    r = kvmhub("restore", booted_vm)
    assert r.code == 4 and "running" in r.err and "kvmhub stop" in r.err
    r = kvmhub("save", booted_vm, "--file", "relative.state")
    assert r.code == 2 and "absolute" in r.err
    r = kvmhub("restore", booted_vm, "--file", str(tmp_path / "missing.state"))
    assert r.code == 4 or r.code == 3, r.err
    r = kvmhub("save", "no-such-vm")
    assert r.code == 3
