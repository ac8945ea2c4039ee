"""`create --secure-boot` on a real libvirtd: libvirt's firmware autoselection picks OVMF's Secure Boot build with
Microsoft's keys enrolled (OVMF_CODE_4M.ms.fd, its variables template OVMF_VARS_4M.ms.fd), QEMU runs it under
TCG, the VM's NVRAM file is made from that template, `show` reports it, export and import carry the NVRAM
(libvirt names none in the definition of such a VM), and `rm` removes the NVRAM file.

The tiny appliance boots with SYSLINUX (BIOS) only, so the test gives a copy of its FAT disk the boot chain a
Debian system boots through under Secure Boot: Debian's shim (signed by Microsoft's UEFI CA, which the enrolled
keys trust) as the removable-media path EFI/BOOT/BOOTX64.EFI, Debian's signed GRUB beside it, and a grub.cfg
booting the tiny kernel (Debian's signed cloud kernel) and initramfs. The guest then reports Secure Boot on."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.testing import TestHost
from kvmhub.tools.tiny.build import DEFAULT_CACHE_DIR, KERNEL_CMDLINE
from kvmhub.tools.tiny.debs import dpkg_extract, fetch, print_uris
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_sh

VM = "vm-sb"
COPY = "vm-sb-copy"
NVRAM = f"/var/lib/libvirt/qemu/nvram/{VM}_VARS.fd"
IMAGE = "tiny-sb"
SHIM = "usr/lib/shim/shimx64.efi.signed"
GRUB = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
# where Debian's signed GRUB may look for its configuration: its prefix, the directory it ran from, /boot/grub
GRUB_CFG_DIRS = ("EFI/debian", "EFI/BOOT", "boot/grub")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def sb_image(kvmhub: Runner, prepared_host: TestHost, tiny_image_file: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tiny image with Debian's shim and signed GRUB on its FAT disk, imported as `tiny-sb`."""
    work = tmp_path_factory.mktemp("sb-image")
    debs = fetch(DEFAULT_CACHE_DIR / "efi-debs", print_uris(["shim-signed", "grub-efi-amd64-signed"]))
    for deb in debs.values():
        dpkg_extract(deb, work / "root")
    raw, cfg = work / "disk.raw", work / "grub.cfg"
    cfg.write_text(f"set timeout=0\nlinux /vmlinuz {KERNEL_CMDLINE}\ninitrd /initrd.gz\nboot\n")
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image_file), str(raw))
    _run("mmd", "-i", str(raw), "::EFI", "::EFI/BOOT", "::EFI/debian", "::boot", "::boot/grub")
    _run("mcopy", "-i", str(raw), str(work / "root" / SHIM), "::EFI/BOOT/BOOTX64.EFI")
    _run("mcopy", "-i", str(raw), str(work / "root" / GRUB), "::EFI/BOOT/grubx64.efi")
    for where in GRUB_CFG_DIRS:
        _run("mcopy", "-i", str(raw), str(cfg), f"::{where}/grub.cfg")
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / f"{IMAGE}.qcow2"))
    raw.unlink()
    r = kvmhub("image", "import", str(work / f"{IMAGE}.qcow2"), "--name", IMAGE)
    assert r.code == 0, r.err
    try:
        yield IMAGE
    finally:
        kvmhub("image", "rm", IMAGE)


@pytest.fixture(scope="module")
def sb_vm(kvmhub: Runner, sb_image: str) -> Iterator[str]:
    r = kvmhub("create", VM, "--image", sb_image, "--network", LAB_NET, "--memory", "512M", "--secure-boot",
               "--wait=booted", "--timeout", "240")
    if r.code != 0:
        log = kvmhub("console", VM, "--log")
        kvmhub("rm", VM)
        raise AssertionError(r.err + r.out + "\nserial log:\n" + log.out[-3000:])
    try:
        yield VM
    finally:
        kvmhub("rm", VM)


def test_the_guest_runs_with_secure_boot_on(prepared_host: TestHost, sb_vm: str) -> None:
    kernel_log = guest_sh(prepared_host, sb_vm, "dmesg")
    # the kernel reads the firmware's SecureBoot variable at boot (and would say "disabled" without it)
    assert "secureboot: Secure boot enabled" in kernel_log


def test_the_vm_runs_on_ovmf_with_secure_boot_and_microsofts_keys(prepared_host: TestHost, sb_vm: str) -> None:
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


def test_export_and_import_carry_the_nvram(prepared_host: TestHost, kvmhub: Runner, sb_vm: str,
                                           tmp_path: Path) -> None:
    r = kvmhub("stop", sb_vm, "--force", "--timeout", "60")
    assert r.code == 0, r.err
    archive = tmp_path / "sb.tar.gz"
    r = kvmhub("export", sb_vm, "--to", str(archive))
    assert r.code == 0, r.err
    r = kvmhub("import", str(archive), "--as", COPY)
    assert r.code == 0, r.err
    try:
        copy = prepared_host.inside(f"/var/lib/libvirt/qemu/nvram/{COPY}_VARS.fd")
        assert copy.read_bytes() == prepared_host.inside(NVRAM).read_bytes()
        shown = json.loads(kvmhub("show", COPY, "--json").out)
        assert (shown["firmware"], shown["secure_boot"]) == ("uefi", True)
    finally:
        assert kvmhub("rm", COPY).code == 0
    assert not copy.exists()


def test_rm_removes_the_nvram_file(prepared_host: TestHost, kvmhub: Runner, sb_vm: str) -> None:
    assert prepared_host.inside(NVRAM).exists()
    r = kvmhub("rm", sb_vm)
    assert r.code == 0, r.err
    assert not prepared_host.inside(NVRAM).exists()
    assert kvmhub("show", sb_vm).code == 3
