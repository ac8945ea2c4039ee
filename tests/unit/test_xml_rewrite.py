"""The in-place rewrite keeps everything but identity, on domains `virt-install --print-xml` writes."""

from __future__ import annotations

import pytest
from lxml import etree

from kvmhub.models import KvmhubMeta
from kvmhub.xml.metadata import ROOT_TAG
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_domain
from tests.domain_corpus import CORPUS, DISK, c14n, print_xml, without_identity


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


def test_a_listen_without_address_keeps_the_hosts_default() -> None:
    xml = """<domain type='kvm'><name>g</name><devices>
      <graphics type='vnc' autoport='yes'><listen type='address'/></graphics>
      <graphics type='spice' autoport='yes' listen='0.0.0.0'><listen type='address' address='0.0.0.0'/></graphics>
    </devices></domain>"""
    out = etree.fromstring(rewrite_domain(xml, Rewrite(name="n", local_graphics=True)).encode())
    vnc, spice = out.findall("devices/graphics")
    assert vnc.get("listen") is None and vnc.find("listen").get("address") is None  # type: ignore[union-attr]
    assert spice.get("listen") == "127.0.0.1" and spice.find("listen").get("address") == "127.0.0.1"  # type: ignore[union-attr]
