"""`host devices` on a private test host lists this machine's real PCI devices; `device attach` is refused with
the reason (no IOMMU here, or the host's own NIC) and the VM's definition stays as it was. No guest boots: the VM
is created shut off."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner

PCI = Path("/sys/bus/pci/devices")
NO_IOMMU = not any(Path("/sys/kernel/iommu_groups").glob("*"))


@pytest.fixture(scope="module")
def shut_off_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    r = kvmhub("create", "devices-vm", "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--no-start")
    assert r.code == 0, r.err
    try:
        yield "devices-vm"
    finally:
        kvmhub("rm", "devices-vm")


def _addressed_nic_pci() -> dict[str, str]:
    """PCI address -> interface, for this machine's NICs that have an IP address (as the host uses them)."""
    links = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    out = {}
    for link in links:
        # the sysfs path of a NIC runs through its PCI device (and, for virtio, a virtioN below it)
        parts = (Path("/sys/class/net") / link["ifname"]).resolve().parts
        pci = [p for p in parts if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", p)]
        if any(a.get("scope") != "host" for a in link.get("addr_info", [])) and pci:
            out[pci[-1]] = link["ifname"]
    return out


def test_host_devices_lists_this_machines_pci_devices(kvmhub: Runner, shut_off_vm: str) -> None:
    r = kvmhub("host", "devices", "--json")
    assert r.code == 0, r.err
    listed = {d["id"]: d for d in r.json() if d["kind"] == "pci"}
    assert set(listed) == {p.name for p in PCI.iterdir()}
    for address, iface in _addressed_nic_pci().items():
        assert listed[address]["host_use"] is not None and iface in listed[address]["host_use"]
    if NO_IOMMU:
        assert all(d["iommu_group"] is None for d in listed.values())
        table = kvmhub("host", "devices")
        assert "the host's IOMMU is off" in table.err


@pytest.mark.skipif(not NO_IOMMU, reason="this machine has an IOMMU: the refusal checked here needs none")
def test_attach_is_refused_without_an_iommu_and_changes_nothing(
        kvmhub: Runner, shut_off_vm: str, prepared_host: TestHost) -> None:
    before = prepared_host.virsh("dumpxml", "--inactive", shut_off_vm).stdout
    devices = kvmhub("host", "devices", "--json").json()
    free = next(d["id"] for d in devices if d["kind"] == "pci" and d["host_use"] is None)
    r = kvmhub("device", "attach", shut_off_vm, free)
    assert r.code == 5, r.out + r.err
    assert "the host's IOMMU is off" in r.err and "intel_iommu=on" in r.err
    for address in _addressed_nic_pci():
        r = kvmhub("device", "attach", shut_off_vm, address)
        assert r.code == 4 and "the host uses PCI device" in r.err, r.err
    assert prepared_host.virsh("dumpxml", "--inactive", shut_off_vm).stdout == before
    assert kvmhub("device", "detach", shut_off_vm, free).code == 3
