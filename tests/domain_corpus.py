"""A corpus of domain definitions as `virt-install --print-xml` writes them, and how to compare two of them.

Shared by the unit test of the in-place rewrite (on libvirt's test driver) and the integration test that
defines the same domains on a private test host and clones, exports and restores them.
"""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
from lxml import etree

from kvmhub.xml.metadata import ROOT_TAG

VIRT_INSTALL = shutil.which("virt-install")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# "{vm}" and "{net}" stand for the domain's name and its network
OVMF = f"loader={OVMF_CODE},loader.readonly=yes,loader.type=pflash," \
       f"nvram.template={OVMF_VARS},nvram=/var/lib/libvirt/qemu/nvram/{{vm}}_VARS.fd"
LOG = "/var/log/libvirt/qemu/{vm}-serial.log"
DISK = "/var/lib/libvirt/images/src.qcow2"
CORPUS: dict[str, list[str]] = {
    "uefi": ["--boot", OVMF],
    "uefi-secure": ["--boot", OVMF + ",loader.secure=yes", "--features", "smm.state=on"],
    "firmware-efi": ["--boot", "firmware=efi"],
    "tpm": ["--tpm", "emulator"],
    "video-virtio-vnc": ["--video", "virtio", "--graphics", "vnc"],
    "spice": ["--graphics", "spice"],
    "virtiofs": ["--filesystem", "/srv/share,share,driver.type=virtiofs",
                 "--memorybacking", "access.mode=shared,source.type=memfd"],
    "9p": ["--filesystem", "/srv/share,share9p"],
    "hostdev": ["--hostdev", "type=usb,xpath0.set=./source/vendor/@id=0x1234,xpath1.set=./source/product/@id=0x5678",
                "--hostdev", "type=pci,xpath0.set=./source/address/@domain=0x0000,"
                "xpath1.set=./source/address/@bus=0x02,"
                "xpath2.set=./source/address/@slot=0x00,xpath3.set=./source/address/@function=0x0"],
    "rng-watchdog-agent": ["--rng", "/dev/urandom", "--watchdog", "i6300esb",
                           "--channel", "unix,target.type=virtio,name=org.qemu.guest_agent.0"],
    "two-serials": ["--serial", f"pty,log.file={LOG}", "--serial", "file,path=/var/log/{vm}-ttyS1.txt"],
    "tuning": ["--cputune", "vcpupin0.vcpu=0,vcpupin0.cpuset=0", "--numatune", "0",
               "--memorybacking", "hugepages=on", "--memballoon", "virtio,stats.period=5"],
    "two-nics": ["--network", "network={net}", "--network", "bridge=br0,mac=52:54:00:aa:bb:cc"],
}


def print_xml(case: str, extra: list[str], *, connect: str = "test:///default", name: str = "src",
              disk: str = DISK, network: str = "default", memory: int = 512, virt_type: str | None = None) -> str:
    """Domain `name` as virt-install writes it for host `connect` (no checks; nothing is created).

    `disk` is its one disk (created by virt-install's test driver only: give a real host an existing file).
    """
    if VIRT_INSTALL is None:
        pytest.skip("virt-install is not installed")
    fill = {"vm": name, "net": network}
    extra = [arg.format_map(fill) for arg in extra]
    size = ",size=1" if connect.startswith("test:") else ""
    argv = [VIRT_INSTALL, "--connect", connect, "--print-xml", "--check", "all=off", "--name", name,
            "--memory", str(memory), "--osinfo", "linux2022", "--disk", f"{disk}{size},format=qcow2",
            "--serial", f"pty,log.file={LOG.format_map(fill)}", *extra]
    if virt_type is not None:
        argv += ["--virt-type", virt_type]
    if "--network" not in extra:
        argv += ["--network", f"network={network}"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, f"virt-install ({case}) failed: {res.stderr}"
    return res.stdout


def without_identity(xml: str) -> etree._Element:
    """The domain minus what a rewrite changes: name, uuid, MACs, disk sources, nvram path, logs, kvmhub metadata."""
    root = etree.fromstring(xml.encode())
    for tag in ("name", "uuid", "genid"):
        for el in root.findall(tag):
            root.remove(el)
    for el in [*root.iterfind("devices/interface/mac"), *root.iterfind("devices/disk/source"),
               *root.iterfind(f"metadata/{ROOT_TAG}"), *root.iterfind("devices/serial/log")]:
        el.getparent().remove(el)  # type: ignore[union-attr]
    for el in root.iterfind("os/nvram"):
        el.text = None
    for el in root.iterfind("devices/disk"):
        el.attrib.pop("type")  # a file's source becomes a volume's
    for el in root.iter():
        el.tail = None
        if el.text is not None and not el.text.strip():
            el.text = None
    return root


def c14n(root: etree._Element) -> bytes:
    """Canonical bytes of an element, for comparing two definitions."""
    return etree.tostring(copy.deepcopy(root), method="c14n")
