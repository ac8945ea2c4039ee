"""Archives and backup directories may hold only what kvmhub's own export/backup writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.errors import InvalidInput
from kvmhub.models.backup import BackupDisk, BackupManifest, BackupPoint
from kvmhub.services.snapshots import backups
from kvmhub.xml.hostbound import unexportable, untrusted_refusals

PLAIN = """<domain type='kvm'><name>v</name><os><type>hvm</type></os><devices>
  <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='default' volume='v.qcow2'/>
    <target dev='vda' bus='virtio'/></disk>
  <interface type='network'><source network='default'/></interface>
  <serial type='pty'><log file='/var/log/libvirt/qemu/v-serial.log'/></serial>
  <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
</devices></domain>"""

HOSTILE = {
    "nbd disk": ("<disk type='network' device='disk'><source protocol='nbd' name='x'><host name='10.0.0.1'/>"
                 "</source><target dev='vdb'/></disk>", "network-disk"),
    "rbd disk": ("<disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdc'/>"
                 "</disk>", "network-disk"),
    "http disk": ("<disk type='network' device='cdrom'><source protocol='http' name='/x.iso'><host name='h'/>"
                  "</source><target dev='sda'/></disk>", "network-disk"),
    "bridge nic": ("<interface type='bridge'><source bridge='br0'/></interface>", "nic"),
    "macvtap nic": ("<interface type='direct'><source dev='eth0' mode='bridge'/></interface>", "nic"),
    "pci hostdev": ("<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='2' slot='0' "
                    "function='0'/></source></hostdev>", "hostdev"),
    "usb hostdev": ("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0x5678'/>"
                    "</source></hostdev>", "hostdev"),
    "encrypted disk": ("<disk type='file' device='disk'><source file='/a'><encryption format='luks'>"
                       "<secret type='passphrase' uuid='0a0b'/></encryption></source><target dev='vdd'/></disk>",
                       "secret"),
    "iscsi auth": ("<disk type='network' device='disk'><source protocol='iscsi' name='iqn/1'><auth username='u'>"
                   "<secret type='iscsi' usage='s'/></auth></source><target dev='vde'/></disk>", "secret"),
    "virtiofs share": ("<filesystem type='mount'><driver type='virtiofs'/><source dir='/etc'/>"
                       "<target dir='etc'/></filesystem>", "filesystem"),
    "serial to host file": ("<serial type='file'><source path='/etc/cron.d/x'/></serial>", "chardev"),
    "nic script": ("<interface type='network'><source network='default'/><script path='/tmp/x.sh'/></interface>",
                   "file"),
}


def with_device(xml: str) -> etree._Element:
    root = etree.fromstring(PLAIN.encode())
    devices = root.find("devices")
    assert devices is not None
    devices.append(etree.fromstring(xml.encode()))
    return root


def test_a_plain_kvmhub_definition_is_accepted() -> None:
    assert untrusted_refusals(etree.fromstring(PLAIN.encode())) == []


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_device_is_refused_with_its_reason(case: str) -> None:
    device, kind = HOSTILE[case]
    ties = untrusted_refusals(with_device(device))
    assert kind in {t.kind for t in ties}, (case, ties)
    assert all(t.what and t.why for t in ties)


def test_host_paths_in_os_and_qemu_passthrough_are_refused() -> None:
    root = etree.fromstring(PLAIN.encode())
    os_el = root.find("os")
    assert os_el is not None
    etree.SubElement(os_el, "loader", {"type": "pflash"}).text = "/etc/shadow"
    etree.SubElement(os_el, "nvram", {"template": "/root/.ssh/id_rsa"})
    etree.SubElement(root, "{http://libvirt.org/schemas/domain/qemu/1.0}commandline")
    whats = " ".join(t.what for t in untrusted_refusals(root))
    assert "/etc/shadow" in whats and "/root/.ssh/id_rsa" in whats and "qemu:commandline" in whats


def test_stock_uefi_firmware_is_accepted() -> None:
    root = etree.fromstring(PLAIN.encode())
    os_el = root.find("os")
    assert os_el is not None
    etree.SubElement(os_el, "loader", {"type": "pflash", "readonly": "yes"}).text = "/usr/share/OVMF/OVMF_CODE_4M.fd"
    etree.SubElement(os_el, "nvram", {"template": "/usr/share/OVMF/OVMF_VARS_4M.fd"}).text = "/x/v_VARS.fd"
    assert untrusted_refusals(root) == []


def test_tpm_passthrough_and_host_devices_refuse_an_export_but_an_emulated_tpm_travels() -> None:
    tpm = with_device("<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>")
    assert unexportable(tpm) == []  # its swtpm state goes in the archive
    assert [t.kind for t in unexportable(with_device("<tpm><backend type='passthrough'/></tpm>"))] == ["tpm"]
    assert untrusted_refusals(tpm, allow_tpm_emulator=True) == []
    assert [t.kind for t in unexportable(with_device(HOSTILE["pci hostdev"][0]))] == ["hostdev"]


def manifest(where: Path, files: list[str]) -> BackupManifest:
    point = BackupPoint(name="0001", kind="full", checkpoint="c", created="now",
                        disks=[BackupDisk(target="vda", file=f) for f in files])
    return BackupManifest(vm="v", uuid="u", points=[point])


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.qcow2", "sub/dir.qcow2"])
def test_backup_manifest_file_names_must_be_plain(tmp_path: Path, name: str) -> None:
    m = manifest(tmp_path, [name])
    with pytest.raises(InvalidInput, match="not a plain file name"):
        backups._check_files(tmp_path, str(tmp_path), m, m.points)


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def test_backup_file_backed_by_a_file_outside_the_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.raw"
    outside.write_bytes(b"host secret" * 100)
    where = tmp_path / "backup"
    where.mkdir()
    qemu_img("create", "-f", "qcow2", "-b", str(outside), "-F", "raw", str(where / "0001-full-vda.qcow2"))
    m = manifest(where, ["0001-full-vda.qcow2"])
    with pytest.raises(InvalidInput, match="outside the backup's own files"):
        backups._check_files(where, str(where), m, m.points)


def test_a_backup_chain_inside_the_directory_is_accepted(tmp_path: Path) -> None:
    qemu_img("create", "-f", "qcow2", str(tmp_path / "0001-full-vda.qcow2"), "1M")
    qemu_img("create", "-f", "qcow2", "-b", "0001-full-vda.qcow2", "-F", "qcow2",
             str(tmp_path / "0002-incremental-vda.qcow2"))
    m = manifest(tmp_path, ["0001-full-vda.qcow2"])
    m.points.append(BackupPoint(name="0002", kind="incremental", parent="0001", checkpoint="d", created="now",
                                disks=[BackupDisk(target="vda", file="0002-incremental-vda.qcow2")]))
    backups._check_files(tmp_path, str(tmp_path), m, m.points)  # raises nothing
