"""The image store: local qcow2/raw imports, hostile images refused, listing and removal."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.models.image import ImageMeta
from kvmhub.ops.locks import LockSpec, hold
from kvmhub.services.storage import image_records
from kvmhub.services.storage.default_pools import IMAGES_POOL, images_pool
from kvmhub.testing import TestHost
from kvmhub.xml import volume as xml_volume
from tests.integration.conftest import Runner


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def test_raw_import_is_converted_to_qcow2_and_removed(prepared_host: TestHost, kvmhub: Runner,
                                                     tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    qemu_img("create", "-f", "raw", str(raw), "32M")
    r = kvmhub("image", "import", str(raw), "--name", "rawdisk")
    assert r.code == 0, r.err
    info = kvmhub("image", "show", "rawdisk", "--json").json()
    assert info["format"] == "qcow2" and info["virtual_bytes"] == 32 * 1024**2
    assert "rawdisk" in [i["name"] for i in kvmhub("image", "ls", "--json").json()]
    assert kvmhub("image", "import", str(raw), "--name", "rawdisk").code == 4
    assert kvmhub("image", "rm", "rawdisk").code == 0
    assert "rawdisk" not in kvmhub("image", "ls").out


@pytest.mark.parametrize("kind", ["backing", "data-file"])
def test_qcow2_pointing_at_host_files_is_refused(kind: str, prepared_host: TestHost, kvmhub: Runner,
                                                 tmp_path: Path) -> None:
    evil = tmp_path / "evil.qcow2"
    if kind == "backing":
        qemu_img("create", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", "-u", str(evil), "16M")
    else:
        target = tmp_path / "data.raw"
        qemu_img("create", "-f", "qcow2", "-o", f"data_file={target}", str(evil), "16M")
    r = kvmhub("image", "import", str(evil), "--name", "evil")
    assert r.code == 2, r.err
    assert ("backing file" if kind == "backing" else "external data file") in r.err
    assert "evil" not in kvmhub("image", "ls").out


def test_a_file_lying_about_its_format_is_refused(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    raw = tmp_path / "plain.img"
    raw.write_bytes(b"\0" * 65536)
    r = kvmhub("image", "import", str(raw), "--name", "liar", "--format", "qcow2")
    assert r.code == 2 and "header says raw" in r.err
    assert kvmhub("image", "import", str(tmp_path / "missing"), "--name", "x").code == 2


def test_an_image_backing_volumes_and_vms_in_another_pool_is_kept(prepared_host: TestHost, kvmhub: Runner,
                                                                  tiny_image_file: Path) -> None:
    # shared <- users/base.qcow2 <- users/top.qcow2 <- VM: the VM is found two links down, in another pool
    image, pool, vm = "shared", "imgusers", "img-user"
    assert kvmhub("image", "import", str(tiny_image_file), "--name", image).code == 0
    try:
        r = kvmhub("pool", "create", pool, "--type", "dir", "--path", f"/var/lib/libvirt/{pool}")
        assert r.code == 0, r.err
        for src, dst in ((f"kvmhub-images/{image}.qcow2", "base.qcow2"), (f"{pool}/base.qcow2", "top.qcow2")):
            r = kvmhub("vol", "clone", src, f"{pool}/{dst}", "--linked")
            assert r.code == 0, r.err
        r = kvmhub("image", "rm", image)
        assert r.code == 4 and f"{pool}/base.qcow2" in r.err and "fix:" in r.err, r.err
        r = kvmhub("create", vm, "--vol", f"{pool}/top.qcow2", "--memory", "192M", "--no-start")
        assert r.code == 0, r.err
        r = kvmhub("image", "rm", image)
        assert r.code == 4 and f"in use by: {vm}" in r.err, r.err
        assert kvmhub("image", "show", image, "--json").json()["used_by"] == [vm]
        listed = {i["name"]: i["used_by"] for i in kvmhub("image", "ls", "--json").json()}
        assert listed[image] == [vm] and vm not in listed["tiny"]
    finally:
        kvmhub("rm", vm)
        kvmhub("pool", "rm", pool, "--delete-data")
        kvmhub("image", "rm", image)
    assert image not in [i["name"] for i in kvmhub("image", "ls", "--json").json()]


def _put_volume(hv: Hypervisor, name: str, data: bytes | None = None, *, qcow2_size: int = 0) -> None:
    pool = images_pool(hv)
    if data is None:
        pool.create_volume(xml_volume.volume_xml(name, qcow2_size, "qcow2", None, None), what=f"creating {name}")
        return
    vol = pool.create_volume(xml_volume.volume_xml(name, len(data), "raw", None, None), what=f"creating {name}")
    vol.upload(io.BytesIO(data), len(data))


def _pool_volumes(host: TestHost) -> set[str]:
    return {x.split()[0] for x in host.virsh("vol-list", IMAGES_POOL).stdout.splitlines() if x.strip()}


def test_records_of_earlier_versions_are_adopted_once_and_their_volumes_deleted(prepared_host: TestHost,
                                                                                kvmhub: Runner) -> None:
    old = ImageMeta(source="https://example.org/old.vmdk", sha256="cd" * 32, checksum_verified="sha256",
                    original_format="vmdk", os="debian12", imported=datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC))
    with Hypervisor(prepared_host.uri) as hv:
        _put_volume(hv, "old.qcow2", qcow2_size=16 * 1024**2)
        _put_volume(hv, "old.json", old.model_dump_json(indent=2).encode())
        _put_volume(hv, "half.qcow2", qcow2_size=16 * 1024**2)
        _put_volume(hv, "half.json", old.model_copy(update={"complete": False}).model_dump_json().encode())
        _put_volume(hv, "gone.json", old.model_dump_json().encode())  # its image was deleted behind kvmhub
        _put_volume(hv, "notes.json", b'{"not": "a record"}')
        _put_volume(hv, "byhand.qcow2", qcow2_size=16 * 1024**2)  # copied in by hand: no record
    try:
        # an import or removal holding the image: its record is read where it is and left for later
        with hold(prepared_host.uri, [LockSpec("image", "old")]):
            busy = {i["name"]: i for i in kvmhub("image", "ls", "--json").json()}
            assert busy["old"]["source"] == old.source and busy["old"]["os"] == "debian12"
            assert {"old.json", "notes.json"} <= _pool_volumes(prepared_host)
            assert not {"half.json", "gone.json"} & _pool_volumes(prepared_host)
        first = kvmhub("image", "ls", "--json")
        assert first.code == 0, first.err
        listed = {i["name"]: i for i in first.json()}
        assert listed["old"]["source"] == old.source and listed["old"]["sha256"] == old.sha256
        assert listed["old"]["original_format"] == "vmdk" and listed["old"]["checksum_verified"] == "sha256"
        assert listed["old"]["imported"].startswith("2025-05-06T07:08:09")
        assert listed["byhand"]["source"] is None and listed["byhand"]["format"] == "qcow2"
        assert "gone" not in listed and "notes" not in listed
        volumes = _pool_volumes(prepared_host)
        assert not {"old.json", "half.json", "gone.json"} & volumes and "notes.json" in volumes
        assert kvmhub("image", "ls", "--json").out == first.out  # from kvmhub's database from now on
        assert kvmhub("image", "show", "old", "--json").json() == listed["old"]
        r = kvmhub("image", "show", "half")
        assert r.code == 4 and "is not complete" in r.err, r.err
        assert kvmhub("image", "show", "byhand", "--json").json()["sha256"] is None
        assert kvmhub("image", "rm", "old").code == 0
        assert image_records.get(prepared_host.uri, IMAGES_POOL, "old.qcow2") is None
        assert "old" not in kvmhub("image", "ls").out
    finally:
        for vol in ("old.qcow2", "half.qcow2", "byhand.qcow2", "old.json", "half.json", "gone.json", "notes.json"):
            prepared_host.virsh("vol-delete", vol, "--pool", IMAGES_POOL, check=False)
            image_records.forget(prepared_host.uri, IMAGES_POOL, vol)
