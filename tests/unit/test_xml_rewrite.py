"""The in-place rewrite keeps everything but identity, on domains `virt-install --print-xml` writes."""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
from lxml import etree

from kvmhub.models import KvmhubMeta
from kvmhub.xml.metadata import ROOT_TAG
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_domain

VIRT_INSTALL = shutil.which("virt-install")
OVMF = "loader=/usr/share/OVMF/OVMF_CODE_4M.fd,loader.readonly=yes,loader.type=pflash," \
       "nvram.template=/usr/share/OVMF/OVMF_VARS_4M.fd,nvram=/var/lib/libvirt/qemu/nvram/src_VARS.fd"
LOG = "/var/log/libvirt/qemu/src-serial.log"
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
    "two-serials": ["--serial", f"pty,log.file={LOG}", "--serial", "file,path=/var/log/src-ttyS1.txt"],
    "tuning": ["--cputune", "vcpupin0.vcpu=0,vcpupin0.cpuset=0", "--numatune", "0",
               "--memorybacking", "hugepages=on", "--memballoon", "virtio,stats.period=5"],
    "two-nics": ["--network", "network=default", "--network", "bridge=br0,mac=52:54:00:aa:bb:cc"],
}


def print_xml(name: str, extra: list[str]) -> str:
    """A domain as virt-install writes it, offline (libvirt's test driver, no checks)."""
    if VIRT_INSTALL is None:
        pytest.skip("virt-install is not installed")
    argv = [VIRT_INSTALL, "--connect", "test:///default", "--print-xml", "--check", "all=off", "--name", "src",
            "--memory", "512", "--osinfo", "linux2022", "--disk", f"{DISK},size=1,format=qcow2",
            "--serial", f"pty,log.file={LOG}", *extra]
    if "--network" not in extra:
        argv += ["--network", "network=default"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, f"virt-install ({name}) failed: {res.stderr}"
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
    return etree.tostring(copy.deepcopy(root), method="c14n")


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_rewrite_keeps_everything_but_identity(case: str) -> None:
    src = print_xml(case, CORPUS[case])
    new_uuid = "9b5e2a53-6a52-4e5e-9d1f-0a1b2c3d4e5f"
    out = rewrite_domain(src, Rewrite(
        name="copy", uuid=new_uuid, mac=lambda n, _old: f"52:54:00:00:10:{n:02x}",
        disks={DISK: NewSource(pool="default", volume="copy-disk0.qcow2")},
        serial_log="/var/log/libvirt/qemu/copy-serial.log", nvram="/var/lib/libvirt/qemu/nvram/copy_VARS.fd",
        meta=KvmhubMeta(owned_volumes=["default/copy-disk0.qcow2"])))
    assert c14n(without_identity(out)) == c14n(without_identity(src)), case

    new = etree.fromstring(out.encode())
    assert new.findtext("name") == "copy" and new.findtext("uuid") == new_uuid
    macs = [m.get("address") for m in new.iterfind("devices/interface/mac")]
    assert macs == [f"52:54:00:00:10:{n:02x}" for n in range(len(macs))] and macs
    source = new.find("devices/disk/source")
    assert source is not None and (source.get("pool"), source.get("volume")) == ("default", "copy-disk0.qcow2")
    assert new.find("devices/disk").get("type") == "volume"  # type: ignore[union-attr]
    assert new.find("devices/serial/log").get("file") == "/var/log/libvirt/qemu/copy-serial.log"  # type: ignore[union-attr]
    if new.findtext("os/nvram"):
        assert new.findtext("os/nvram") == "/var/lib/libvirt/qemu/nvram/copy_VARS.fd"
    owned = new.findall(f"metadata/{ROOT_TAG}/{{https://kvmhub.dev/xmlns/1}}owned-volume")
    assert [o.text for o in owned] == ["default/copy-disk0.qcow2"]
    # other tools' metadata stays
    assert new.find("metadata/{http://libosinfo.org/xmlns/libvirt/domain/1.0}libosinfo") is not None


def test_uefi_secure_boot_elements_survive() -> None:
    out = etree.fromstring(rewrite_domain(print_xml("uefi-secure", CORPUS["uefi-secure"]), Rewrite(name="b")).encode())
    loader = out.find("os/loader")
    assert loader is not None and loader.get("secure") == "yes" and loader.get("type") == "pflash"
    assert out.find("features/smm").get("state") == "on"  # type: ignore[union-attr]
    assert out.find("os/nvram").get("template") == "/usr/share/OVMF/OVMF_VARS_4M.fd"  # type: ignore[union-attr]
    assert out.find("uuid") is None  # no uuid asked for: libvirt makes one


HOST_BOUND = """<domain type='kvm' id='7'>
  <name>live</name><uuid>0e4b1d3c-4f6a-4bd2-9a64-7d1ea2c3b4d5</uuid><genid>1d8b7d1c-8f0e-4c5a-9e6b-2d3c4e5f6a7b</genid>
  <seclabel type='dynamic' model='selinux' relabel='yes'><label>system_u:system_r:svirt_t:s0:c1,c2</label>
    <imagelabel>system_u:object_r:svirt_image_t:s0:c1,c2</imagelabel></seclabel>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/live.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/var/lib/libvirt/images/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>
    <interface type='network'><mac address='52:54:00:01:02:03'/><source network='default'/>
      <filterref filter='clean-traffic'><parameter name='IP' value='10.0.0.5'/></filterref>
      <alias name='ua-mynic'/></interface>
    <graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0'/>
  </devices>
</domain>"""


def test_host_bound_identity_goes() -> None:
    out = etree.fromstring(rewrite_domain(HOST_BOUND, Rewrite(
        name="n", mac=lambda _n, _o: "52:54:00:09:09:09", filter_ips={"52:54:00:09:09:09": "10.0.0.9"},
        disks={"/var/lib/libvirt/images/live.qcow2": NewSource(path="/var/lib/libvirt/images/n.qcow2")},
        local_graphics=True)).encode())
    assert out.get("id") is None and out.find("uuid") is None
    genid = out.findtext("genid")
    assert genid and genid != "1d8b7d1c-8f0e-4c5a-9e6b-2d3c4e5f6a7b"
    assert out.find("seclabel/label") is None and out.find("seclabel/imagelabel") is None
    assert out.find("seclabel").get("relabel") == "yes"  # type: ignore[union-attr]
    disk = out.find("devices/disk")
    assert disk is not None and disk.find("backingStore") is None and disk.find("alias") is None
    assert disk.find("source").get("file") == "/var/lib/libvirt/images/n.qcow2"  # type: ignore[union-attr]
    nic = out.find("devices/interface")
    assert nic is not None and nic.find("alias").get("name") == "ua-mynic"  # type: ignore[union-attr]
    assert [(p.get("name"), p.get("value")) for p in nic.iterfind("filterref/parameter")] == [("IP", "10.0.0.9")]
    graphics = out.find("devices/graphics")
    assert graphics is not None and graphics.get("port") == "-1" and graphics.get("listen") == "127.0.0.1"
