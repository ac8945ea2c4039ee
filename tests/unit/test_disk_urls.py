"""Disk URLs into network sources, and back; the boot disk swap of `create --vol/--disk-url`."""

from __future__ import annotations

import pytest

from kvmhub.errors import InvalidInput
from kvmhub.models import DiskSource, DiskSpec, KvmhubMeta, VMSpec
from kvmhub.services.storage.disks import _next_target, parse_url, source_text, url_format, with_boot_disk
from kvmhub.xml.controller import has_scsi_controller, scsi_controller_xml
from kvmhub.xml.disk import disk_from_xml, disk_targets, disk_to_xml

GOOD = [
    ("nfs://nas.example/export/vms/a.qcow2", DiskSource(protocol="nfs", host="nas.example",
                                                        name="/export/vms/a.qcow2")),
    ("nfs://10.0.0.5/export/tiny.raw", DiskSource(protocol="nfs", host="10.0.0.5", name="/export/tiny.raw")),
    (
        "iscsi://10.0.0.6:3261/iqn.2024-01.dev.kvmhub:disks/1",
        DiskSource(protocol="iscsi", host="10.0.0.6", port=3261, name="iqn.2024-01.dev.kvmhub:disks/1"),
    ),
    ("iscsi://san/iqn.2003-01.org.x/007", DiskSource(protocol="iscsi", host="san", name="iqn.2003-01.org.x/7")),
    ("nbd://127.0.0.1:10809/tiny", DiskSource(protocol="nbd", host="127.0.0.1", port=10809, name="tiny")),
    ("nbd://[::1]:10809", DiskSource(protocol="nbd", host="::1", port=10809)),
    ("nbd://host", DiskSource(protocol="nbd", host="host")),
    ("https://mirror.example:8443/img/disk.raw", DiskSource(protocol="https", host="mirror.example", port=8443,
                                                           name="/img/disk.raw")),
    ("HTTP://Mirror.Example/disk.qcow2", DiskSource(protocol="http", host="mirror.example", name="/disk.qcow2")),
]

BAD = [
    ("ftp://host/x.img", "not 'ftp'"),
    ("/var/lib/x.img", "bare path"),
    ("nfs://host/file.raw", "EXPORT/FILE"),
    ("nfs://host/export/dir/", "EXPORT/FILE"),
    ("nfs://host:2049/export/file", "rpcbind"),
    ("nfs://host/export/../etc/shadow", "'..'"),
    ("iscsi://host/iqn.2024-01.x/lun", "IQN"),
    ("iscsi://host/notaniqn/0", "IQN"),
    ("iscsi://host/iqn.2024-01.x", "IQN"),
    ("nbd://u:p@host/x", "credentials"),
    ("nbd://host:0/x", "port"),
    ("nbd://host:70000/x", "port"),
    ("nbd://host/a/b", "at most one export"),
    ("http://host/", "path of the file"),
    ("http://host/x?token=1", "query"),
    ("nbd:///x", "no host"),
    ("nbd://bad_host!/x", "not a host name"),
]


@pytest.mark.parametrize(("url", "want"), GOOD)
def test_parse_url(url: str, want: DiskSource) -> None:
    assert parse_url(url) == want


@pytest.mark.parametrize(("url", "why"), BAD)
def test_parse_url_refuses(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_url(url)
    assert why in (exc.value.cause or ""), exc.value.cause
    assert exc.value.hint and "nfs://" in exc.value.hint


@pytest.mark.parametrize(("url", "_want"), GOOD)
def test_source_text_round_trips(url: str, _want: DiskSource) -> None:
    src = parse_url(url)
    assert parse_url(source_text(src)) == src


@pytest.mark.parametrize(("url", "_want"), GOOD)
def test_network_disk_xml_round_trips(url: str, _want: DiskSource) -> None:
    src = parse_url(url)
    disk = DiskSpec(target="vdc", format=url_format(src), source=src,  # type: ignore[arg-type]
                    readonly=src.protocol in ("http", "https"))
    assert disk_from_xml(disk_to_xml(disk)) == disk


def test_url_format() -> None:
    assert url_format(parse_url("nbd://h:1/x.qcow2")) == "raw"  # qemu-nbd serves decoded guest data
    assert url_format(parse_url("nfs://h/e/x.qcow2")) == "qcow2"
    assert url_format(parse_url("nfs://h/e/x.img")) == "raw"
    assert url_format(parse_url("iscsi://h/iqn.2024-01.x/0")) == "raw"


def test_with_boot_disk_keeps_place_and_disowns() -> None:
    pool = "default"
    spec = VMSpec(
        name="vm1",
        disks=[
            DiskSpec(target="sda", bus="scsi", boot_order=1, source=DiskSource(pool=pool, volume="vm1-disk0.qcow2")),
            DiskSpec(target="vdb", format="raw", readonly=True, source=DiskSource(pool=pool, volume="vm1-seed.iso")),
        ],
        meta=KvmhubMeta(owned_volumes=["default/vm1-disk0.qcow2", "default/vm1-seed.iso"]),
    )
    boot = DiskSpec(format="raw", source=parse_url("nbd://127.0.0.1:10809/tiny"))
    out = with_boot_disk(spec, boot, "default", "vm1-disk0.qcow2")
    first = out.disks[0]
    assert (first.target, first.bus, first.boot_order, first.format) == ("sda", "scsi", 1, "raw")
    assert first.source == boot.source
    assert out.disks[1] == spec.disks[1]
    assert out.meta.owned_volumes == ["default/vm1-seed.iso"]


DOMAIN = """<domain type='qemu'><name>vm1</name><devices>
  <disk type='file' device='disk'><source file='/x.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <disk type='file' device='floppy'><source file='/f.img'/><target dev='fda' bus='fdc'/></disk>
  <disk type='file' device='disk'><source file='/y.raw'/><target dev='sda' bus='sata'/></disk>
  {controller}
</devices></domain>"""


def test_disk_targets_include_unmodelled_disks() -> None:
    assert disk_targets(DOMAIN.format(controller="")) == {"vda", "fda", "sda"}


def test_scsi_controller() -> None:
    ctl = scsi_controller_xml()
    assert "model=\"virtio-scsi\"" in ctl and "type=\"scsi\"" in ctl
    assert not has_scsi_controller(DOMAIN.format(controller=""))
    assert has_scsi_controller(DOMAIN.format(controller=ctl))


def test_next_free_target_per_bus() -> None:
    taken = disk_targets(DOMAIN.format(controller=""))
    assert _next_target("virtio", taken) == "vdb"
    assert _next_target("scsi", taken) == "sdb"  # scsi and sata share the sd names
    assert _next_target("sata", taken | {"sdb"}) == "sdc"
