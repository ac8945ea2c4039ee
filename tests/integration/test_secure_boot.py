"""`create --secure-boot` on a real libvirtd: libvirt's firmware autoselection picks OVMF's Secure Boot build with
Microsoft's keys enrolled (OVMF_CODE_4M.ms.fd, its variables template OVMF_VARS_4M.ms.fd), QEMU runs it under
TCG, the VM's NVRAM file is made from that template, `show` reports it, and `rm` removes the NVRAM file.

The tiny appliance boots with SYSLINUX (BIOS) only, so its OS does not start under UEFI: what is checked is what
a user sees of the firmware, the VM running (OVMF did not crash or stop QEMU) and the files it leaves."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner

VM = "vm-sb"
NVRAM = f"/var/lib/libvirt/qemu/nvram/{VM}_VARS.fd"


@pytest.fixture(scope="module")
def sb_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    r = kvmhub("create", VM, "--image", "tiny", "--memory", "256M", "--secure-boot")
    assert r.code == 0, r.err + r.out
    try:
        yield VM
    finally:
        kvmhub("rm", VM)


def test_the_vm_runs_on_ovmf_with_secure_boot_and_microsofts_keys(prepared_host: TestHost, sb_vm: str) -> None:
    time.sleep(5)  # OVMF gets through its early phases under TCG; a firmware QEMU cannot run stops the VM
    assert prepared_host.virsh("domstate", sb_vm).stdout.strip() == "running"
    live = etree.fromstring(prepared_host.virsh("dumpxml", sb_vm).stdout.encode())
    loader, nvram = live.find("os/loader"), live.find("os/nvram")
    assert loader is not None and nvram is not None
    assert (loader.get("type"), loader.get("secure"), loader.text) == ("pflash", "yes",
                                                                       "/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
    assert (nvram.get("template"), nvram.text) == ("/usr/share/OVMF/OVMF_VARS_4M.ms.fd", NVRAM)
    assert live.xpath("string(features/smm/@state)") == "on"
    assert "q35" in str(live.xpath("string(os/type/@machine)"))
    assert prepared_host.inside(NVRAM).stat().st_size > 0


def test_show_reports_uefi_with_secure_boot(kvmhub: Runner, sb_vm: str) -> None:
    r = kvmhub("show", sb_vm, "--json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert (shown["firmware"], shown["secure_boot"]) == ("uefi", True)
    r = kvmhub("show", sb_vm)
    assert "firmware: uefi (Secure Boot)" in r.out


def test_rm_removes_the_nvram_file(prepared_host: TestHost, kvmhub: Runner, sb_vm: str) -> None:
    assert prepared_host.inside(NVRAM).exists()
    r = kvmhub("rm", sb_vm)
    assert r.code == 0, r.err
    assert not prepared_host.inside(NVRAM).exists()
    assert kvmhub("show", sb_vm).code == 3
