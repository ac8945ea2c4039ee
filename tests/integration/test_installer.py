"""The installer path on a real private libvirtd, with the tiny appliance's kernel and initrd standing in for
an installer: a preseeded ``--location`` install (the injected file seen inside the guest), a bootable
``--iso`` with its VNC display answering, and a direct kernel boot. The three guests boot in parallel."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import pytest
from lxml import etree

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost
from kvmhub.tools import installer as media
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_run

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
PRESEED = b"d-i debian-installer/locale string en_US\nd-i netcfg/get_hostname string inst\n"
BOOTED = "KVMHUB-BOOTED"

pytestmark = pytest.mark.skipif(
    not (ISOLINUX.exists() and LDLINUX.exists() and shutil.which("xorriso") and shutil.which("mcopy")),
    reason="needs the packages isolinux, syslinux-common, xorriso and mtools",
)


@dataclass
class Tiny:
    kernel: Path
    initrd: Path


@pytest.fixture(scope="module")
def tiny_boot(tiny_image_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """The tiny appliance's kernel and initrd, copied off its FAT boot disk."""
    out = tmp_path_factory.mktemp("tiny-boot")
    raw = out / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image_file), str(raw)], check=True)
    subprocess.run(["mcopy", "-i", str(raw), "::vmlinuz", "::initrd.gz", str(out)], check=True)
    raw.unlink()
    return Tiny(out / "vmlinuz", out / "initrd.gz")


def debianlike_iso(dest: Path, tiny: Tiny) -> Path:
    """An ISO laid out like a Debian netinst (Rock Ridge names), its 'installer' the tiny appliance."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", vol_ident="Debianlike 12 amd64")
    iso.add_directory("/INSTALL", rr_name="install.amd")
    for iso_name, rr_name, src in (("VMLINUZ.;1", "vmlinuz", tiny.kernel), ("INITRD.GZ;1", "initrd.gz", tiny.initrd)):
        data = src.read_bytes()
        iso.add_fp(io.BytesIO(data), len(data), f"/INSTALL/{iso_name}", rr_name=rr_name)
    iso.write(str(dest))
    iso.close()
    return dest


def bootable_iso(dest: Path, tiny: Tiny) -> Path:
    """An isolinux CD that boots the tiny appliance (it needs no disk), with a marker on its command line."""
    tree = dest.parent / "cd-tree"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(ISOLINUX, tree / "isolinux")
    shutil.copy(LDLINUX, tree / "isolinux")
    shutil.copy(tiny.kernel, tree / "vmlinuz")
    shutil.copy(tiny.initrd, tree / "initrd.gz")
    (tree / "isolinux" / "isolinux.cfg").write_text(
        "SERIAL 0 115200\nDEFAULT tiny\nPROMPT 0\nTIMEOUT 0\nLABEL tiny\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n"
        "  APPEND console=tty0 console=ttyS0,115200n8 panic=10 kvmhub.boot=cdrom\n"
    )
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", str(dest), "-b", "isolinux/isolinux.bin",
         "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
         "-R", "-J", "-V", "KVMHUB_CD", str(tree)],
        check=True,
    )
    return dest


def dumpxml(host: TestHost, vm: str, *, inactive: bool = False) -> str:
    return host.virsh("dumpxml", vm, *(["--inactive"] if inactive else [])).stdout


def wait_marker(host: TestHost, vm: str, marker: str, timeout: float = 240) -> str:
    """The guest's serial log once it holds ``marker`` at the start of a line."""
    log = host.inside(f"/var/log/libvirt/qemu/{vm}-serial.log")
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(rf"^{marker}", text, re.M):
            return text
        time.sleep(0.5)
    raise AssertionError(f"{vm} never printed {marker}; serial log tail:\n{text[-2000:]}")


def guest_cat(host: TestHost, vm: str, path: str, timeout: float = 180) -> str:
    """A file of the guest, read through its guest agent once that answers."""
    hv = Hypervisor(host.uri)
    try:
        dom = hv_domains.lookup(hv, vm)
        deadline = time.monotonic() + timeout
        while not dom.agent_ping():
            assert time.monotonic() < deadline, f"the guest agent of {vm} never answered"
            time.sleep(1)
    finally:
        hv.close()
    result = guest_run(host, vm, ["/bin/cat", path], timeout=60)
    assert result.code == 0, result.err
    return result.out


def show_field(kvmhub: Runner, vm: str, field: str) -> str:
    r = kvmhub("show", vm, "--json")
    assert r.code == 0, r.err
    value = r.json()[field]
    return "" if value is None else str(value)


@dataclass
class Guests:
    inst: str
    cdvm: str
    kvm: str


@pytest.fixture(scope="module")
def guests(prepared_host: TestHost, kvmhub: Runner, tiny_boot: Tiny,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guests]:
    """Three VMs: a preseeded install (defined, checked, then started), a CD-ROM boot and a kernel boot."""
    tmp = tmp_path_factory.mktemp("installer")
    preseed = tmp / "p.cfg"
    preseed.write_bytes(PRESEED)
    names = Guests("inst", "cdvm", "kvm1")
    try:
        r = kvmhub("create", names.inst, "--location", str(debianlike_iso(tmp / "debianlike.iso", tiny_boot)),
                   "--preseed", str(preseed), "--disk", "1G", "--memory", "192M", "--no-start")
        assert r.code == 0, r.err
        r = kvmhub("create", names.cdvm, "--iso", str(bootable_iso(tmp / "it.iso", tiny_boot)), "--disk", "1G",
                   "--memory", "192M", "--network", LAB_NET)
        assert r.code == 0, r.err
        # stderr is no terminal here: the upload's progress comes as sparse lines up to 100 %
        assert re.search(r"^create cdvm: upload cdvm-install\.iso: 100% of ", r.err, re.M), r.err
        r = kvmhub("create", names.kvm, "--kernel", str(tiny_boot.kernel), "--initrd", str(tiny_boot.initrd),
                   "--cmdline", "console=ttyS0,115200n8 panic=10 kvmhub.boot=direct", "--image", "tiny",
                   "--memory", "192M")
        assert r.code == 0, r.err
        yield names
    finally:
        for vm in (names.inst, names.cdvm, names.kvm):
            kvmhub("rm", vm)


def test_preseed_install_is_defined_with_the_injected_initrd(prepared_host: TestHost, kvmhub: Runner,
                                                             guests: Guests, tmp_path: Path) -> None:
    dom = etree.fromstring(dumpxml(prepared_host, guests.inst))
    assert dom.findtext("os/kernel", "").endswith("/inst-kernel")
    assert dom.findtext("os/initrd", "").endswith("/inst-initrd")
    cmdline = dom.findtext("os/cmdline", "")
    assert "auto=true priority=critical" in cmdline and "console=ttyS0" in cmdline
    assert dom.findtext("on_reboot") == "destroy"
    cdrom = dom.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("source[@volume='inst-install.iso']") is not None
    assert cdrom.find("readonly") is not None
    assert "installer kernel" in show_field(kvmhub, guests.inst, "boot")
    # the initrd as the guest will get it, fetched back from the host
    got = tmp_path / "initrd"
    prepared_host.virsh("vol-download", "--pool", "default", "inst-initrd", str(got))
    members = {m.path: m for m in media.read_initrd(got)}
    assert members["preseed.cfg"].data == PRESEED
    assert "init" in members  # the installer's own archive is still there


def test_preseed_install_boots_once_with_the_file_in_its_root(prepared_host: TestHost, kvmhub: Runner,
                                                              guests: Guests) -> None:
    r = kvmhub("start", guests.inst)
    assert r.code == 0, r.err
    # from now on the definition boots the disk; this run is the installer's
    after = etree.fromstring(dumpxml(prepared_host, guests.inst, inactive=True))
    assert after.find("os/kernel") is None and after.findtext("on_reboot") == "restart"
    assert etree.fromstring(dumpxml(prepared_host, guests.inst)).find("os/kernel") is not None
    wait_marker(prepared_host, guests.inst, BOOTED)
    assert guest_cat(prepared_host, guests.inst, "/preseed.cfg").encode() == PRESEED
    cmdline = guest_cat(prepared_host, guests.inst, "/proc/cmdline")
    assert "auto=true priority=critical" in cmdline
    # the installer's closing reboot ends the run instead of booting the installer again
    hv = Hypervisor(prepared_host.uri)
    try:
        hv_domains.lookup(hv, guests.inst).agent_command(
            {"execute": "guest-exec", "arguments": {"path": "/bin/busybox", "arg": ["reboot"]}})
    finally:
        hv.close()
    deadline = time.monotonic() + 120
    while prepared_host.virsh("domstate", guests.inst).stdout.strip() != "shut off":
        assert time.monotonic() < deadline, "the VM did not power off at the installer's reboot"
        time.sleep(0.5)
    assert show_field(kvmhub, guests.inst, "boot") == ""


def test_iso_boots_from_cdrom_with_vnc_on_loopback(prepared_host: TestHost, kvmhub: Runner, guests: Guests) -> None:
    vnc = show_field(kvmhub, guests.cdvm, "vnc")
    found = re.fullmatch(r"127\.0\.0\.1:(\d+)", vnc)
    assert found, f"show gave vnc={vnc!r}"
    port = int(found.group(1))
    assert 5900 <= port <= 65535
    r = kvmhub("show", guests.cdvm)
    assert f"vnc: 127.0.0.1:{port}" in r.out
    probe = (f"import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=20); "
             "print(s.recv(12).decode())")
    banner = prepared_host.run([sys.executable, "-c", probe], timeout=60).stdout
    assert re.match(r"RFB 003\.00\d", banner), banner
    wait_marker(prepared_host, guests.cdvm, BOOTED)
    # the command line from the CD's isolinux.cfg: the empty disk could not have booted it
    cmdline = guest_cat(prepared_host, guests.cdvm, "/proc/cmdline")
    assert "kvmhub.boot=cdrom" in cmdline
    dom = etree.fromstring(dumpxml(prepared_host, guests.cdvm))
    cdrom = dom.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.findtext("boot[@order='1']") is not None
    assert dom.find("devices/disk[@device='disk']/boot[@order='2']") is not None
    assert [d.get("volume") for d in dom.iterfind("devices/disk/source")] == [
        "cdvm-disk0.qcow2", "cdvm-install.iso"]  # no seed: no cloud-init option was given
    # the CD-ROM boots first for this run only: the definition for later starts boots the disk
    inactive = etree.fromstring(dumpxml(prepared_host, guests.cdvm, inactive=True))
    assert inactive.find("devices/disk[@device='disk']/boot[@order='1']") is not None
    cdrom = inactive.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("boot") is None
    assert cdrom.find("source[@volume='cdvm-install.iso']") is not None  # still attached
    assert "CD-ROM first for this run only" in show_field(kvmhub, guests.cdvm, "boot")


def test_direct_kernel_boot_reaches_the_boot_marker(prepared_host: TestHost, kvmhub: Runner, guests: Guests) -> None:
    wait_marker(prepared_host, guests.kvm, BOOTED)
    cmdline = guest_cat(prepared_host, guests.kvm, "/proc/cmdline")
    assert "kvmhub.boot=direct" in cmdline  # not the syslinux line on the image's own disk
    note = show_field(kvmhub, guests.kvm, "boot")
    assert note.startswith("kernel ") and "kvm1-kernel" in note and "installer" not in note


def test_a_kernel_boot_made_with_virsh_keeps_its_kernel(prepared_host: TestHost, kvmhub: Runner, guests: Guests,
                                                        tmp_path: Path) -> None:
    kernel = prepared_host.virsh("vol-path", "--pool", "default", f"{guests.kvm}-kernel").stdout.strip()
    xml = tmp_path / "foreign.xml"
    xml.write_text(
        "<domain type='qemu'><name>foreign</name><memory unit='MiB'>64</memory>"
        f"<os><type arch='x86_64'>hvm</type><kernel>{kernel}</kernel><cmdline>console=ttyS0</cmdline></os>"
        "<on_reboot>destroy</on_reboot></domain>"
    )
    prepared_host.virsh("define", str(xml))
    try:
        r = kvmhub("start", "foreign")
        assert r.code == 0, r.err
        assert "installer" not in r.err
        after = etree.fromstring(dumpxml(prepared_host, "foreign", inactive=True))
        assert after.findtext("os/kernel") == kernel and after.findtext("os/cmdline") == "console=ttyS0"
        assert after.findtext("on_reboot") == "destroy"
    finally:
        prepared_host.virsh("destroy", "foreign", check=False)
        prepared_host.virsh("undefine", "foreign")


def test_installer_volumes_go_with_the_vm(prepared_host: TestHost, kvmhub: Runner, tiny_boot: Tiny) -> None:
    r = kvmhub("create", "kvm-rm", "--kernel", str(tiny_boot.kernel), "--disk", "64M", "--no-start")
    assert r.code == 0, r.err
    vols = prepared_host.virsh("vol-list", "default").stdout
    assert "kvm-rm-kernel" in vols and "kvm-rm-disk0.qcow2" in vols and "kvm-rm-seed" not in vols
    r = kvmhub("rm", "kvm-rm")
    assert r.code == 0, r.err
    assert "kvm-rm" not in prepared_host.virsh("vol-list", "default").stdout


def test_bad_installer_requests_change_nothing(prepared_host: TestHost, kvmhub: Runner, tiny_boot: Tiny,
                                               tmp_path: Path) -> None:
    other = tmp_path / "other.iso"
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="OTHER")
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.;1")
    iso.write(str(other))
    iso.close()
    before = prepared_host.virsh("vol-list", "default").stdout
    r = kvmhub("create", "bad", "--location", str(other))
    assert r.code == 2 and "no installer kernel and initrd" in r.err and "install.amd/vmlinuz" in r.err
    r = kvmhub("create", "bad", "--iso", str(other), "--vnc-port", "80")
    assert r.code == 2 and "--vnc-port 80 is out of range" in r.err
    binary = tmp_path / "ks.cfg"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    r = kvmhub("create", "bad", "--location", str(other), "--kickstart", str(binary))
    assert r.code == 2 and "is not text" in r.err
    # a failure after the uploads takes every volume back
    preseed = tmp_path / "p.cfg"
    preseed.write_bytes(PRESEED)
    installer_iso = debianlike_iso(tmp_path / "d.iso", tiny_boot)
    for fault in ("upload-installer", "define"):
        r = kvmhub("create", "bad", "--location", str(installer_iso), "--preseed", str(preseed), "--no-start",
                   env={"KVMHUB_INJECT_FAULT": fault})
        assert r.code != 0 and "injected failure" in r.err, r.err
    assert prepared_host.virsh("vol-list", "default").stdout == before
    assert "bad" not in prepared_host.virsh("list", "--all", "--name").stdout.split()
