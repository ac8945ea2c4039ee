"""Snapshots through the kvmhub CLI on a private test host, checked from inside real guests.

Two guests are shared by the module: one takes internal snapshots (with memory), the other external
disk-only ones, since kvmhub does not mix both kinds on one VM. Files are written on the guest's boot
disk (FAT, mounted at /mnt/disk) through the guest agent, then checked after each revert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_sh

FILE = "/mnt/disk/snapfile"
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 1; done"


def write_file(host: TestHost, vm: str, text: str) -> None:
    guest_sh(host, vm, f"echo {text} > {FILE} && sync")


def read_file(host: TestHost, vm: str) -> str:
    return guest_sh(host, vm, f"cat {FILE}", wait=180).strip()


def ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=300)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.out


def snaps(kvmhub: Runner, vm: str) -> dict[str, dict[str, object]]:
    return {s["name"]: s for s in __import__("json").loads(ok(kvmhub, "snapshot", "ls", vm, "--json"))}


@pytest.fixture(scope="module")
def ext_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """A second tiny guest for external snapshots; removed after the module."""
    name = "vm-snap-ext"
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--wait",
               "--timeout", "240")
    assert r.code == 0, r.err
    try:
        yield name
    finally:
        kvmhub("rm", name)


def test_internal_snapshot_revert_brings_back_file_and_running_process(
    booted_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    host, vm = prepared_host, booted_vm
    write_file(host, vm, "original")
    guest_sh(host, vm, f"sh -c '{COUNTER}' >/dev/null 2>&1 &")
    time.sleep(3)
    before = int(guest_sh(host, vm, "cat /tmp/counter"))
    ok(kvmhub, "snapshot", "create", vm, "mem1", "--description", "before the change")
    write_file(host, vm, "changed")
    time.sleep(2)
    assert read_file(host, vm) == "changed"

    out = kvmhub("snapshot", "revert", vm, "mem1", timeout=300)
    assert out.code == 0, out.err
    assert "running" in out.err
    assert read_file(host, vm) == "original"
    after = int(guest_sh(host, vm, "cat /tmp/counter"))
    time.sleep(2.5)
    later = int(guest_sh(host, vm, "cat /tmp/counter"))
    # the counter carries on from where the snapshot caught it: it neither restarted nor stopped
    assert before <= after < before + 15, (before, after)
    assert later > after
    info = snaps(kvmhub, vm)["mem1"]
    assert (info["kind"], info["memory"], info["current"]) == ("internal", True, True)
    assert info["description"] == "before the change"
    ok(kvmhub, "snapshot", "rm", vm, "mem1")


def _three_levels(kvmhub: Runner, host: TestHost, vm: str, prefix: str, *flags: str) -> None:
    for level in ("1", "2", "3"):
        write_file(host, vm, f"level{level}")
        ok(kvmhub, "snapshot", "create", vm, f"{prefix}{level}", *flags)


def _check_tree_after_middle_removal(kvmhub: Runner, host: TestHost, vm: str, prefix: str) -> None:
    refused = kvmhub("snapshot", "rm", vm, f"{prefix}2")
    assert refused.code == 4, refused.err
    assert "has children" in refused.err and "--children" in refused.err
    ok(kvmhub, "snapshot", "rm", vm, f"{prefix}2", "--keep-children")
    tree = snaps(kvmhub, vm)
    assert f"{prefix}2" not in tree
    assert tree[f"{prefix}3"]["parent"] == f"{prefix}1"
    assert tree[f"{prefix}1"]["children"] == [f"{prefix}3"]
    for level in ("1", "3", "1"):
        ok(kvmhub, "snapshot", "revert", vm, f"{prefix}{level}", "--running")
        assert read_file(host, vm) == f"level{level}"
        assert snaps(kvmhub, vm)[f"{prefix}{level}"]["current"] is True


def test_internal_tree_delete_in_the_middle_keeps_the_others_revertable(
    booted_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    _three_levels(kvmhub, prepared_host, booted_vm, "i")
    listing = kvmhub("snapshot", "ls", booted_vm)
    assert listing.code == 0
    lines = listing.out.splitlines()
    assert lines[1].startswith("i1") and "└─ i2" in lines[2] and "└─ i3 *" in lines[3]
    _check_tree_after_middle_removal(kvmhub, prepared_host, booted_vm, "i")
    ok(kvmhub, "snapshot", "rm", booted_vm, "i1", "--children")
    assert snaps(kvmhub, booted_vm) == {}


def test_refusals_name_the_reason(booted_vm: str, ext_vm: str, kvmhub: Runner) -> None:
    r = kvmhub("snapshot", "revert", booted_vm, "no-such-snap")
    assert r.code == 3 and "no snapshot 'no-such-snap'" in r.err
    r = kvmhub("snapshot", "rm", booted_vm, "no-such-snap")
    assert r.code == 3
    r = kvmhub("snapshot", "create", booted_vm, "bad/name")
    assert r.code == 2
    r = kvmhub("snapshot", "create", booted_vm, "x", "--quiesce")
    assert r.code == 2 and "--disk-only" in r.err
    r = kvmhub("snapshot", "create", booted_vm, "x", "--memory", "--disk-only")
    assert r.code == 2


def test_external_snapshot_revert_brings_back_the_file(
    ext_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    host, vm = prepared_host, ext_vm
    write_file(host, vm, "original")
    ok(kvmhub, "snapshot", "create", vm, "e1", "--disk-only", "--quiesce")
    info = snaps(kvmhub, vm)["e1"]
    assert (info["kind"], info["memory"]) == ("external", False)
    write_file(host, vm, "changed")
    ok(kvmhub, "snapshot", "revert", vm, "e1", "--running")
    assert read_file(host, vm) == "original"
    ok(kvmhub, "snapshot", "rm", vm, "e1")
    assert read_file(host, vm) == "original"


def test_external_tree_delete_in_the_middle_then_everything_merges_back(
    ext_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    host, vm = prepared_host, ext_vm
    _three_levels(kvmhub, host, vm, "x", "--disk-only")
    _check_tree_after_middle_removal(kvmhub, host, vm, "x")
    write_file(host, vm, "latest")
    ok(kvmhub, "snapshot", "rm", vm, "x1", "--children")
    assert snaps(kvmhub, vm) == {}
    assert read_file(host, vm) == "latest"
    # every overlay was merged or discarded: only the VM's own disk and seed are left, and they are sound
    vols = host.virsh("vol-list", "default").stdout
    assert sorted(line.split()[0] for line in vols.splitlines() if line.strip().startswith(vm)) == [
        f"{vm}-disk0.qcow2", f"{vm}-seed.iso"]
    shown = kvmhub("show", vm, "--json").json()
    assert shown["disks"][0]["source"]["volume"] == f"{vm}-disk0.qcow2" or shown["disks"][0]["source"]["path"]
    check = host.run(["qemu-img", "check", "-U", "-f", "qcow2", f"/var/lib/libvirt/images/{vm}-disk0.qcow2"],
                     check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_external_snapshot_of_a_shut_off_vm(ext_vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    host, vm = prepared_host, ext_vm
    write_file(host, vm, "offline")
    ok(kvmhub, "kill", vm)
    ok(kvmhub, "snapshot", "create", vm, "off1", "--disk-only")
    assert snaps(kvmhub, vm)["off1"]["state"] == "shutoff"
    ok(kvmhub, "start", vm)
    write_file(host, vm, "online")
    ok(kvmhub, "kill", vm)
    ok(kvmhub, "snapshot", "revert", vm, "off1")
    assert kvmhub("show", vm, "--json").json()["state"] == "shut off"
    ok(kvmhub, "snapshot", "rm", vm, "off1")  # merged with the VM started paused, then stopped again
    assert kvmhub("show", vm, "--json").json()["state"] == "shut off"
    ok(kvmhub, "start", vm)
    assert read_file(host, vm) == "offline"
