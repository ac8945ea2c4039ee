"""Pool XML for every pool type kvmhub makes: built from a PoolSpec, read back to the same spec, bad specs refused.

The golden files (tests/unit/data/xml/pool-*.xml) are declared in test_xml_golden.py from POOL_SPECS below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmhub.errors import InvalidInput
from kvmhub.models import PoolSpec
from kvmhub.services.storage.pools import resolve
from kvmhub.services.storage.volumes import check_volume_name, split_ref
from kvmhub.xml.pool import (
    check_pool_path,
    pool_from_xml,
    pool_path_from_xml,
    pool_source_text,
    pool_to_xml,
    pool_type_from_xml,
)

IQN = "iqn.2024-01.lab.kvmhub:tiny"
POOL_SPECS: dict[str, PoolSpec] = {
    "dir-spec": PoolSpec(name="vms", type="dir", path="/var/lib/libvirt/pools/vms"),
    "fs": PoolSpec(name="scratch", type="fs", devices=["/dev/vdb1"], path="/srv/scratch", fs_format="ext4"),
    "netfs": PoolSpec(name="shared", type="netfs", host="nfs.lab", export="/srv/vms", path="/var/lib/libvirt/shared",
                      nfs_version="4.2"),
    "logical": PoolSpec(name="lvm", type="logical", vg="vmvg", devices=["/dev/sdb", "/dev/sdc"]),
    "iscsi": PoolSpec(name="san", type="iscsi", host="10.0.0.5", port=3260, iqn=IQN, path="/dev/disk/by-path"),
    "iscsi-direct": PoolSpec(name="isc", type="iscsi-direct", host="127.0.0.1", iqn=IQN,
                             initiator_iqn="iqn.2024-01.lab.kvmhub:host1"),
    "rbd": PoolSpec(name="ceph", type="rbd", host="mon1.lab", port=6789, source_name="vms", auth_user="libvirt",
                    secret_uuid="2a5b9d4e-7c1f-4e8a-9b3d-6f0e1c2a3b4d"),  # noqa: S106 - a UUID, not a key
}


@pytest.mark.parametrize("key", POOL_SPECS)
def test_pool_xml_reads_back_to_the_same_spec(key: str) -> None:
    spec = POOL_SPECS[key]
    xml = pool_to_xml(spec)
    assert pool_from_xml(xml) == spec
    assert pool_type_from_xml(xml) == spec.type


def test_targets_and_sources_land_where_libvirt_reads_them() -> None:
    assert pool_path_from_xml(pool_to_xml(POOL_SPECS["logical"])) == "/dev/vmvg"
    assert pool_path_from_xml(pool_to_xml(POOL_SPECS["iscsi-direct"])) is None
    assert pool_path_from_xml(pool_to_xml(POOL_SPECS["rbd"])) is None
    assert pool_source_text(POOL_SPECS["netfs"]) == "nfs.lab:/srv/vms"
    assert pool_source_text(POOL_SPECS["iscsi-direct"]) == f"127.0.0.1 {IQN}"
    default_iscsi = POOL_SPECS["iscsi"].model_copy(update={"path": None})
    assert pool_path_from_xml(pool_to_xml(default_iscsi)) == "/dev/disk/by-path"


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"type": "dir", "path": None}, "needs --path"),
        ({"type": "netfs", "path": "/mnt/x", "host": "h"}, "needs --export"),
        ({"type": "iscsi-direct", "host": "h", "iqn": IQN}, "needs --initiator-iqn"),
        ({"type": "dir", "path": "/srv/p", "host": "h"}, "takes no --host"),
        ({"type": "dir", "path": "relative/p"}, "not absolute"),
        ({"type": "dir", "path": "/srv/../etc"}, "not normalized"),
        ({"type": "dir", "path": "/srv/p/"}, "not normalized"),
        ({"type": "dir", "path": "//srv/p"}, "not normalized"),
        ({"type": "dir", "path": "/srv/a\x00b"}, "NUL"),
        ({"type": "dir", "path": "/"}, "system directories"),
        ({"type": "dir", "path": "/etc"}, "system directories"),
        ({"type": "dir", "path": "/proc/self"}, "system directories"),
        ({"type": "iscsi", "host": "h", "iqn": "not-an-iqn"}, "invalid --iqn"),
        ({"type": "rbd", "host": "h;rm -rf /", "source_name": "p"}, "invalid host"),
        ({"type": "rbd", "host": "h", "source_name": "p", "auth_user": "u"}, "go together"),
        ({"type": "logical", "vg": "../vg"}, "invalid --vg"),
    ],
)
def test_bad_pool_specs_are_refused_saying_why(changes: dict[str, object], says: str) -> None:
    spec = PoolSpec.model_validate({"name": "p", **changes})
    with pytest.raises(InvalidInput, match=None) as info:
        pool_to_xml(spec)
    assert says in str(info.value)


@pytest.mark.parametrize("path", ["/var/lib/libvirt/pools/a", "/var/lib/libvirt/images", "/var/lib/libvirt/h3pool",
                                  "/srv/vms", "/mnt/vms", "/data", "/data/vms", "/home/alice/vms", "/opt/vms"])
def test_a_normal_pool_path_passes(path: str) -> None:
    assert check_pool_path(path) == path


@pytest.mark.parametrize("path", ["/etc/ssh", "/root/.ssh", "/usr/lib", "/boot/grub", "/var/lib/libvirt/qemu",
                                  "/var/lib/libvirt/qemu/nvram", "/lib64", "/lib/modules", "/sbin", "/run/lock",
                                  "/sys/kernel", "/dev/shm", "/var/log/libvirt", "/var/lib/dpkg", "/home", "/srv"])
def test_system_directories_and_whatever_lies_in_them_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput, match="system directories"):
        check_pool_path(path)


def test_a_path_is_resolved_through_its_symlinks_inside_the_host_root(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "real").mkdir()
    (tmp_path / "srv" / "to-etc").symlink_to("/etc")  # absolute: stays inside the host root
    (tmp_path / "srv" / "rel").symlink_to("real")
    root = str(tmp_path)
    assert resolve(root, "/srv/real/pool") == "/srv/real/pool"
    assert resolve(root, "/srv/to-etc") == "/etc"
    assert resolve(root, "/srv/to-etc/ssh") == "/etc/ssh"
    assert resolve(root, "/srv/rel/new") == "/srv/real/new"


@pytest.mark.parametrize("name", ["data.qcow2", "a", "disk_1+x-2.raw", "A.B"])
def test_plain_volume_names_pass(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/passwd", ".hidden", "..", ".", "a\x00b", "", "a b", "a:b"])
def test_volume_names_that_could_leave_the_pool_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        check_volume_name(name)


@pytest.mark.parametrize("ref", ["p1/../x", "/etc/passwd", "p1/a/b", "p1/..", "noslash", "/x", "p1/", "p1/a\x00"])
def test_volume_refs_that_could_leave_the_pool_are_refused(ref: str) -> None:
    with pytest.raises(InvalidInput):
        split_ref(ref)


def test_volume_refs_split_into_pool_and_name() -> None:
    assert split_ref("isc/unit:0:0:1") == ("isc", "unit:0:0:1")
    assert split_ref("copy.qcow2", default_pool="p1") == ("p1", "copy.qcow2")
