"""The image store: local qcow2/raw imports, hostile images refused, listing and removal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
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
