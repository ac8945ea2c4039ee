"""Snapshots of a UEFI guest (OVMF in pflash, with an NVRAM file) through the kvmhub CLI on a private test host.

libvirt refuses internal snapshots of a VM whose firmware lives in pflash, so kvmhub takes external ones
for UEFI guests. The guest is a kvmhub VM (linked clone of the `tiny` image) whose definition is turned into
a q35 + OVMF one. The tiny disk boots with SYSLINUX from BIOS only, so OVMF is given the tiny kernel and
initramfs (read from that disk) as a direct kernel boot: the guest really runs under UEFI, mounts its boot
disk at /mnt/disk and answers through its guest agent, so a file written in it can be checked after revert.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import GuestResult, guest_run

VM = "uefi-vm"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
NVRAM = f"/var/lib/libvirt/qemu/nvram/{VM}_VARS.fd"
FILE = "/mnt/disk/uefi-snapfile"
BOOT_TIMEOUT = 240.0


def ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=300)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}{r.out}"
    return r.out


def state(host: TestHost) -> str:
    return host.virsh("domstate", VM).stdout.strip()


def sh(host: TestHost, script: str, timeout: float = 60) -> str:
    """`sh -c script` in the guest (fails on a non-zero exit); its stdout."""
    res = guest_run(host, VM, ["/bin/sh", "-c", script], timeout=timeout)
    assert res.code == 0, f"{script!r} exited {res.code}: {res.out}{res.err}"
    return res.out


def wait_for_agent(host: TestHost, timeout: float = BOOT_TIMEOUT) -> None:
    """Until the guest agent runs a command (the guest has booted, or been restored)."""
    deadline = time.monotonic() + timeout
    last: Exception | GuestResult | None = None
    while time.monotonic() < deadline:
        try:
            last = guest_run(host, VM, ["/bin/true"], timeout=10)
            if last.code == 0:
                return
        except Exception as exc:  # the agent is not up yet
            last = exc
        time.sleep(1)
    log = host.inside(f"/var/log/libvirt/qemu/{VM}-serial.log")
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no serial log)"
    raise AssertionError(f"the guest agent of {VM} did not answer in {timeout:.0f} s ({last!r}); serial:\n{tail}")


def extract_kernel(image: Path, dest: Path) -> tuple[Path, Path]:
    """The tiny appliance's kernel and initramfs, copied out of its FAT boot disk."""
    raw = dest / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(image), str(raw)],
                   check=True, capture_output=True, timeout=120)
    try:
        for name in ("vmlinuz", "initrd.gz"):
            subprocess.run(["mcopy", "-n", "-i", str(raw), f"::{name}", str(dest / name)],
                           check=True, capture_output=True, timeout=60)
    finally:
        raw.unlink()
    return dest / "vmlinuz", dest / "initrd.gz"


def to_uefi(domain_xml: str, kernel: Path, initrd: Path) -> str:
    """The VM's definition as a q35 machine booting `kernel` through OVMF (pflash code + NVRAM vars).

    PCI addresses and controllers of the i440fx definition are dropped: libvirt lays them out again for q35.
    """
    root = etree.fromstring(domain_xml.encode())
    os_el = root.find("os")
    assert os_el is not None
    os_type = os_el.find("type")
    assert os_type is not None
    os_type.set("machine", "q35")
    for old in [*os_el.findall("boot"), *os_el.findall("loader"), *os_el.findall("nvram")]:
        os_el.remove(old)
    loader = etree.SubElement(os_el, "loader", {"readonly": "yes", "secure": "no", "type": "pflash"})
    loader.text = str(OVMF_CODE)
    etree.SubElement(os_el, "nvram", {"template": str(OVMF_VARS)}).text = NVRAM
    etree.SubElement(os_el, "kernel").text = str(kernel)
    etree.SubElement(os_el, "initrd").text = str(initrd)
    etree.SubElement(os_el, "cmdline").text = "console=ttyS0,115200n8 quiet panic=10"
    devices = root.find("devices")
    assert devices is not None
    for ctrl in devices.findall("controller"):
        if ctrl.get("type") in ("pci", "usb"):
            devices.remove(ctrl)
    for parent in root.iter():
        for addr in parent.findall("address"):
            if addr.get("type") == "pci":
                parent.remove(addr)
    return str(etree.tostring(root, encoding="unicode"))


def snapshot_json(kvmhub: Runner, snap: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(ok(kvmhub, "snapshot", "show", VM, snap, "--json"))
    return info


def files_of(host: TestHost) -> set[str]:
    """What the private images directory holds, and what libvirt's default pool lists."""
    host.virsh("pool-refresh", "default")
    listed = {line.split()[0] for line in host.virsh("vol-list", "default").stdout.splitlines() if line.strip()}
    return listed | {p.name for p in host.images_dir.iterdir()}


@pytest.fixture
def uefi_vm(prepared_host: TestHost, kvmhub: Runner, tiny_image_file: Path, tmp_path: Path) -> Iterator[str]:
    """A running tiny VM on q35 + OVMF (pflash firmware, NVRAM from the OVMF_VARS template)."""
    if not (OVMF_CODE.is_file() and OVMF_VARS.is_file()):
        pytest.skip(f"{OVMF_CODE} / {OVMF_VARS} missing: apt-get install ovmf")
    host = prepared_host
    boot = tmp_path / "boot"
    boot.mkdir()
    kernel, initrd = extract_kernel(tiny_image_file, boot)
    ok(kvmhub, "create", VM, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--no-start")
    try:
        xml = tmp_path / f"{VM}.xml"
        xml.write_text(to_uefi(host.virsh("dumpxml", "--inactive", VM).stdout, kernel, initrd))
        host.virsh("define", str(xml))
        ok(kvmhub, "start", VM)
        yield VM
    finally:
        kvmhub("rm", VM)
        if host.virsh("dominfo", VM, check=False).returncode == 0:  # kvmhub rm failed: do not leak the VM
            host.virsh("destroy", VM, check=False)
            host.virsh("undefine", VM, "--nvram", "--snapshots-metadata", check=False)
        shutil.rmtree(boot, ignore_errors=True)


def test_external_snapshot_of_a_running_uefi_guest_reverts_and_cleans_up(
    prepared_host: TestHost, kvmhub: Runner, uefi_vm: str
) -> None:
    host = prepared_host
    before = {n for n in files_of(host) if not n.startswith(VM)}  # the VM's own disk and seed go with it
    live = etree.fromstring(host.virsh("dumpxml", VM).stdout.encode())
    loader = live.find("os/loader")
    assert loader is not None and loader.get("type") == "pflash" and loader.text == str(OVMF_CODE)
    assert live.findtext("os/nvram") == NVRAM
    assert host.inside(NVRAM).is_file(), "libvirt did not create the NVRAM file from the template"

    wait_for_agent(host)
    assert sh(host, "test -d /sys/firmware/efi && echo uefi").strip() == "uefi", "the guest did not boot by UEFI"
    sh(host, f"grep -q ' /mnt/disk ' /proc/mounts && echo original > {FILE} && sync")

    ok(kvmhub, "snapshot", "create", VM, "s1")
    assert state(host) == "running"
    info = snapshot_json(kvmhub, "s1")
    assert info["kind"] == "external", info
    assert info["current"] is True
    vda = next(d for d in info["disks"] if d["target"] == "vda")
    assert vda["snapshot"] == "external" and vda["file"], info
    # a running VM gets its memory saved too (an external memory file: QEMU cannot keep it inside the qcow2)
    assert info["memory"] is True and info["memory_file"] and host.inside(info["memory_file"]).is_file(), info
    # the VM now writes to the snapshot's overlay
    blk = dict(line.split(None, 1) for line in host.virsh("domblklist", VM).stdout.splitlines() if line.strip())
    assert blk["vda"].strip() == vda["file"], blk

    sh(host, f"echo changed > {FILE} && sync")
    assert sh(host, f"cat {FILE}").strip() == "changed"

    ok(kvmhub, "snapshot", "revert", VM, "s1")  # a memory snapshot of a running VM comes back running
    assert state(host) == "running"
    wait_for_agent(host, timeout=120)
    assert sh(host, f"cat {FILE}").strip() == "original"
    assert snapshot_json(kvmhub, "s1")["current"] is True

    ok(kvmhub, "snapshot", "rm", VM, "s1")
    assert json.loads(ok(kvmhub, "snapshot", "ls", VM, "--json")) == []
    assert state(host) == "running"
    assert sh(host, f"cat {FILE}").strip() == "original"  # the merge changed nothing the guest sees

    remove_and_check_nothing_is_left(host, kvmhub, before)


def test_snapshot_of_a_shut_off_uefi_vm_is_external_and_rm_takes_it_along(
    prepared_host: TestHost, kvmhub: Runner, uefi_vm: str
) -> None:
    host = prepared_host
    before = {n for n in files_of(host) if not n.startswith(VM)}
    ok(kvmhub, "kill", VM)
    assert host.inside(NVRAM).is_file()
    ok(kvmhub, "snapshot", "create", VM, "off1")
    info = snapshot_json(kvmhub, "off1")
    assert (info["kind"], info["memory"], info["state"]) == ("external", False, "shutoff"), info
    ok(kvmhub, "snapshot", "revert", VM, "off1")
    assert state(host) == "shut off"
    ok(kvmhub, "snapshot", "create", VM, "off2")
    # removed with its snapshots still there: their overlays go too
    remove_and_check_nothing_is_left(host, kvmhub, before)


def remove_and_check_nothing_is_left(host: TestHost, kvmhub: Runner, before: set[str]) -> None:
    ok(kvmhub, "rm", VM)
    assert host.virsh("dominfo", VM, check=False).returncode != 0
    assert not host.inside(NVRAM).exists(), "kvmhub rm left the NVRAM file behind"
    assert files_of(host) == before, f"left behind: {sorted(files_of(host) - before)}"
