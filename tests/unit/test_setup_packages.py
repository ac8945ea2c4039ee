"""scripts/setup.sh installs the Debian package of every program and module the code and tests use."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# what kvmhub, its tests or its benchmarks run or load -> the Debian package that ships it
NEEDED = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img, qemu-nbd": "qemu-utils",
    "QEMU's iscsi/nfs/curl block drivers (network disks, iscsi-direct)": "qemu-block-extra",
    "qemu-ga (copied into the tiny image)": "qemu-guest-agent",
    "libvirtd, virtlogd": "libvirt-daemon-system",
    "virsh, virt-xml-validate": "libvirt-clients",
    "virt-install": "virtinst",
    "libvirt's iscsi-direct pool backend": "libvirt-daemon-driver-storage-iscsi-direct",
    "swtpm (vTPM)": "swtpm",
    "swtpm_setup": "swtpm-tools",
    "dnsmasq": "dnsmasq-base",
    "dhcp_release (a removed VM's lease dropped)": "dnsmasq-utils",
    "ip, bridge": "iproute2",
    "ping": "iputils-ping",
    "unshare, nsenter, prlimit": "util-linux",
    "mount, umount, losetup": "mount",
    "iptables (port forwards)": "iptables",
    "tgtd, tgtadm": "tgt",
    "ganesha.nfsd": "nfs-ganesha",
    "ganesha's VFS backend": "nfs-ganesha-vfs",
    "rpcbind, rpcinfo": "rpcbind",
    "mount.nfs (netfs pools)": "nfs-common",
    "vgs, vgcreate (logical pools)": "lvm2",
    "ssh, ssh-keygen": "openssh-client",
    "xorriso": "xorriso",
    "mcopy, mtype": "mtools",
    "mkfs.vfat": "dosfstools",
    "syslinux": "syslinux",
    "isolinux.bin": "isolinux",
    "ldlinux.c32": "syslinux-common",
    "OVMF_CODE_4M.fd": "ovmf",
    "osinfo-query": "libosinfo-bin",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "depmod": "kmod",
    "xz": "xz-utils",
    "xmllint": "libxml2-utils",
}


def _setup_packages() -> set[str]:
    text = (REPO / "scripts" / "setup.sh").read_text()
    match = re.search(r"^PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert match, "no PACKAGES=( ... ) in scripts/setup.sh"
    return set(match.group(1).split())


def test_setup_installs_every_package_used() -> None:
    missing = {what: pkg for what, pkg in NEEDED.items() if pkg not in _setup_packages()}
    assert not missing, f"scripts/setup.sh does not install: {missing}"
