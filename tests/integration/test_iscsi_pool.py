"""An iscsi-direct pool on a userspace iSCSI target, holding a VM's boot disk.

tgtd (from Debian's tgt) runs in the test host's namespaces and exports one LUN, a raw copy of the tiny
image. libvirt's iscsi-direct backend (libiscsi, no kernel initiator) lists it as a volume; a VM created
with that volume as its boot disk boots from it, and the guest sees a disk of the LUN's size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_run

TARGET = "iqn.2024-01.dev.kvmhub.test:tiny"
INITIATOR = "iqn.2024-01.dev.kvmhub.test:host1"
POOL = "isc"
VM = "h3-iscsi-vm"
# tgtd's control socket lives in the shared /run/tgtd; a port of our own keeps parallel runs apart
CONTROL_PORT = str(2000 + os.getpid() % 5000)


def _tgtadm(host: TestHost, *args: str) -> None:
    host.run(["tgtadm", "-C", CONTROL_PORT, "--lld", "iscsi", *args])


@pytest.fixture(scope="module")
def lun(prepared_host: TestHost, tiny_image_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """tgtd serving TARGET with LUN 1 = the tiny image as raw, open to every initiator; yields the LUN size."""
    if shutil.which("tgtd") is None or shutil.which("tgtadm") is None:
        pytest.skip("tgtd/tgtadm are missing (package tgt)")
    if not Path("/usr/lib/x86_64-linux-gnu/libvirt/storage-backend/libvirt_storage_backend_iscsi-direct.so").exists():
        pytest.skip("libvirt's iscsi-direct backend is missing (package libvirt-daemon-driver-storage-iscsi-direct)")
    base = tmp_path_factory.mktemp("iscsi")
    raw = base / "lun1.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image_file), str(raw)], check=True)
    log = open(base / "tgtd.log", "wb")  # noqa: SIM115 - closed in the finally below
    tgtd = prepared_host.popen(["tgtd", "-f", "-C", CONTROL_PORT], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while prepared_host.run(["tgtadm", "-C", CONTROL_PORT, "--op", "show", "--mode", "sys"],
                                check=False).returncode != 0:
            assert tgtd.poll() is None and time.monotonic() < deadline, (base / "tgtd.log").read_text()
            time.sleep(0.2)
        _tgtadm(prepared_host, "--op", "new", "--mode", "target", "--tid", "1", "-T", TARGET)
        _tgtadm(prepared_host, "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", str(raw))
        _tgtadm(prepared_host, "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        yield raw.stat().st_size
    finally:
        tgtd.terminate()
        try:
            tgtd.wait(timeout=15)
        except subprocess.TimeoutExpired:
            tgtd.kill()
            tgtd.wait(timeout=15)
        log.close()
        shutil.rmtree(base, ignore_errors=True)
        for leftover in (f"/run/tgtd/socket.{CONTROL_PORT}", f"/run/tgtd/socket.{CONTROL_PORT}.lock"):
            Path(leftover).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def iscsi_pool(kvmhub: Runner, lun: int) -> Iterator[str]:
    r = kvmhub("pool", "create", POOL, "--type", "iscsi-direct", "--host", "127.0.0.1", "--iqn", TARGET,
               "--initiator-iqn", INITIATOR)
    assert r.code == 0, r.err
    try:
        yield POOL
    finally:
        kvmhub("rm", VM)
        kvmhub("pool", "rm", POOL)


def test_a_vm_boots_from_a_lun_of_an_iscsi_direct_pool(
    prepared_host: TestHost, kvmhub: Runner, lun: int, iscsi_pool: str
) -> None:
    listed = {p["name"]: p for p in kvmhub("pool", "ls", "--json").json()}[iscsi_pool]
    assert (listed["type"], listed["state"]) == ("iscsi-direct", "active")
    assert TARGET in listed["source"]
    vols = {v["name"]: v for v in kvmhub("vol", "ls", iscsi_pool, "--json").json()}
    # libvirt 9.0's iscsi-direct backend reports one 512-byte block less than the LUN holds
    luns = [name for name, v in vols.items() if 0 <= lun - v["capacity_bytes"] <= 512]
    assert len(luns) == 1, (lun, [(n, v["capacity_bytes"]) for n, v in vols.items()])
    ref = f"{iscsi_pool}/{luns[0]}"

    r = kvmhub("create", VM, "--vol", ref, "--memory", "192M", "--network", LAB_NET, "--wait", "--timeout", "240",
               timeout=400)
    assert r.code == 0, r.err
    seen = guest_run(prepared_host, VM, ["cat", "/sys/block/vda/size"], timeout=60)
    assert seen.code == 0 and int(seen.out) * 512 == lun, seen  # the guest's boot disk is the LUN

    shown = kvmhub("vol", "show", ref, "--json").json()
    assert shown["used_by"] == [VM]
    r = kvmhub("pool", "rm", iscsi_pool)
    assert r.code == 4 and VM in r.err, r.err
