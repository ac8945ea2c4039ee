"""A snapshot when the disk fills: a clear error, the guest keeps running, nothing half-made, the disk clean.

The VM's disk lives in a small pool on a 48 MiB tmpfs mounted inside the test host's mount namespace (a
linked clone of the `tiny` image, made through libvirt). The tmpfs is filled up, then an external
disk-only snapshot of the running guest is asked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.services.storage import images
from kvmhub.testing import TestHost
from kvmhub.xml import snapshot as xml_snap
from kvmhub.xml import volume as xml_volume
from tests.integration.conftest import Runner
from tests.integration.guest import guest_run

DIR = "/var/lib/libvirt/small-pool"
POOL = "small"
VM = "vm-diskfull"
DISK = f"{DIR}/{VM}-vda.qcow2"


def _ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=400)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.out + r.err


def _agent_answers(host: TestHost, vm: str, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return guest_run(host, vm, ["true"], timeout=30).code == 0
        except KvmhubError:
            time.sleep(2)
    return False


@pytest.fixture(scope="module")
def small_pool(prepared_host: TestHost) -> Iterator[Path]:
    """Pool `small` on a 48 MiB tmpfs inside the test host; its directory as seen from here."""
    host = prepared_host
    host.run(["mkdir", "-p", DIR])
    host.run(["mount", "-t", "tmpfs", "-o", "size=48M", "tmpfs", DIR])
    try:
        host.virsh("pool-define-as", POOL, "dir", "--target", DIR)
        host.virsh("pool-start", POOL)
        yield host.inside(DIR)
    finally:
        host.virsh("pool-destroy", POOL, check=False)
        host.virsh("pool-undefine", POOL, check=False)
        host.run(["umount", "-l", DIR], check=False)
        host.run(["rmdir", DIR], check=False)


@pytest.fixture(scope="module")
def full_vm(prepared_host: TestHost, kvmhub: Runner, small_pool: Path) -> Iterator[str]:
    """A running tiny guest whose disk is in the small pool."""
    _ok(kvmhub, "create", VM, "--image", "tiny", "--memory", "192M", "--no-start")
    try:
        with Hypervisor(prepared_host.uri) as hv:
            image = images.get(hv, "tiny")
            hv_storage.lookup_pool(hv, POOL).create_volume(
                xml_volume.volume_xml(f"{VM}-vda.qcow2", image.info().capacity, "qcow2", image.path, "qcow2"),
                what="cloning tiny into the small pool")
            dom = hv_domains.lookup(hv, VM)
            hv_domains.define(hv, xml_snap.retarget_domain_disks(dom.xml(inactive=True), {"vda": DISK}))
        _ok(kvmhub, "start", VM, "--wait", "--timeout", "240")
        assert _agent_answers(prepared_host, VM)
        yield VM
    finally:
        kvmhub("rm", VM)


def test_snapshot_on_a_full_pool_fails_cleanly_and_the_guest_runs_on(
    prepared_host: TestHost, kvmhub: Runner, full_vm: str, small_pool: Path
) -> None:
    host, vm = prepared_host, full_vm
    host.run(["dd", "if=/dev/zero", f"of={DIR}/filler", "bs=1M"], check=False, timeout=120)
    assert host.run(["df", "--output=avail", DIR]).stdout.split()[-1] == "0"
    files_before = sorted(p.name for p in small_pool.iterdir())

    r = kvmhub("snapshot", "create", vm, "full1", "--disk-only", timeout=300)
    assert r.code != 0
    assert "no space left" in r.err.lower(), r.err
    assert "fix:" in r.err  # the error says what to do

    state = kvmhub("show", vm, "--json").json()["state"]
    assert state == "running" or "resumed" in r.err, (state, r.err)
    assert _agent_answers(host, vm), "the guest stopped answering after the failed snapshot"
    assert sorted(p.name for p in small_pool.iterdir()) == files_before  # no half-made overlay
    assert json.loads(_ok(kvmhub, "snapshot", "ls", vm, "--json")) == []
    shown = kvmhub("show", vm, "--json").json()
    assert shown["disks"][0]["source"]["path"] == DISK  # still writing to its own disk
    check = host.run(["qemu-img", "check", "-U", "-f", "qcow2", DISK], check=False, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    # with room again the same snapshot works: nothing was left behind that blocks it
    host.run(["rm", f"{DIR}/filler"])
    _ok(kvmhub, "snapshot", "create", vm, "full1", "--disk-only")
    assert guest_run(host, vm, ["sh", "-c", "echo after > /mnt/disk/after.txt && sync"], timeout=60).code == 0
    assert kvmhub("show", vm, "--json").json()["state"] == "running"
