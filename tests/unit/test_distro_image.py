"""The Debian image builder's offline half: what it changes in a debootstrapped root, and the disk it assembles
without a loop device (read back with sfdisk, mtools and debugfs, as a firmware and the kernel would find it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kvmhub.tools.distro import build

TOOLS = ("sfdisk", "mkfs.fat", "mcopy", "mtype", "mdir", "syslinux", "mkfs.ext4", "debugfs", "qemu-img")


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel, text in {
        "boot/vmlinuz-6.1.0-9-cloud-amd64": "kernel",
        "boot/initrd.img-6.1.0-9-cloud-amd64": "initrd",
        "etc/ssh/ssh_host_ed25519_key": "made in the chroot",
        "etc/ssh/sshd_config": "PermitRootLogin no\n",
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "usr/share/doc/bash/copyright": "doc",
        "usr/share/locale/de/LC_MESSAGES/x.mo": "de",
        "usr/share/locale/locale.alias": "alias",
        "debootstrap/debootstrap.log": "log",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_root_becomes_a_cloud_image_without_identity(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    build.configure_root(root)
    cfg = (root / "etc/cloud/cloud.cfg.d/90-kvmhub.cfg").read_text()
    assert "datasource_list: [ NoCloud, ConfigDrive, None ]" in cfg
    assert not list((root / "etc/ssh").glob("ssh_host_*"))  # each VM makes its own
    assert (root / "etc/ssh/sshd_config").is_file()
    assert (root / "etc/machine-id").read_text() == ""
    assert f"LABEL={build.ROOT_LABEL} / ext4" in (root / "etc/fstab").read_text()
    assert [p.name for p in (root / "usr/share/locale").iterdir()] == ["locale.alias"]
    assert not (root / "usr/share/doc/bash").exists() and not (root / "debootstrap").exists()
    assert (root / "etc/systemd/system/e2scrub_reap.service").readlink() == Path("/dev/null")
    build.configure_root(root)  # twice is harmless


@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="disk tools missing: " + " ".join(TOOLS))
def test_the_disk_has_a_bootable_fat_partition_and_the_root_at_its_offset(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    build.configure_root(root)
    image = tmp_path / "debian.qcow2"
    build.make_disk(tmp_path, root, image)
    raw = tmp_path / "disk.raw"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    boot, rootfs = table["partitions"]
    assert (boot["start"], boot.get("bootable"), boot["type"]) == (2048, True, "c")
    assert raw.read_bytes()[:440] == Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]

    fat = f"{raw}@@{boot['start'] * 512}"
    cfg = subprocess.run(["mtype", "-i", fat, "::syslinux.cfg"], capture_output=True, text=True, check=True).stdout
    assert f"APPEND {build.KERNEL_CMDLINE}" in cfg
    assert subprocess.run(["mtype", "-i", fat, "::vmlinuz"], capture_output=True, text=True).stdout == "kernel"
    listing = subprocess.run(["mdir", "-a", "-b", "-i", fat, "::"], capture_output=True, text=True).stdout
    assert "ldlinux.sys" in listing.lower()

    ext4 = f"{raw}?offset={rootfs['start'] * 512}"
    label = subprocess.run(["debugfs", "-R", "stats", ext4], capture_output=True, text=True).stdout
    assert f"Filesystem volume name:   {build.ROOT_LABEL}" in label
    cat = subprocess.run(["debugfs", "-R", "cat /etc/cloud/cloud.cfg.d/90-kvmhub.cfg", ext4], capture_output=True,
                         text=True).stdout
    assert "NoCloud" in cat
