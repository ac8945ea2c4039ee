"""Export and import through the kvmhub CLI: a tiny guest exported on one test host boots on another.

The guest is a linked clone of the `tiny` image on the `lab` network; a file is written on its FAT boot
disk (/mnt/disk) before the export. The archive holds the disk flattened, so the second host needs nothing
but a network to plug it into. Interrupted exports and hostile archives must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET, Result, Runner, ctrl_c_able, run_kvmhub
from tests.integration.guest import guest_sh

VM = "vm-export"
CONTENT = "written-before-export"


def _ok(result: Result, what: str) -> str:
    assert result.code == 0, f"{what} exited {result.code}: {result.err}"
    return result.out + result.err


def _in_guest(host: TestHost, vm: str, script: str) -> str:
    return guest_sh(host, vm, script)


@pytest.fixture(scope="module")
def exported(prepared_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """VM `vm-export` with a file written in it, stopped and exported; the archive path."""
    _ok(kvmhub("create", VM, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--wait",
               "--timeout", "240"), "create")
    try:
        _in_guest(prepared_host, VM, f"echo {CONTENT} > /mnt/disk/export.txt && sync")
        refused = kvmhub("export", VM, "--to", str(tmp_path_factory.mktemp("refused") / "x.tar.gz"))
        assert refused.code == 4 and "running" in refused.err and f"kvmhub stop {VM}" in refused.err
        _ok(kvmhub("stop", VM, "--force", "--timeout", "60"), "stop")
        archive = tmp_path_factory.mktemp("export") / f"{VM}.tar.gz"
        out = _ok(kvmhub("export", VM, "--to", str(archive), timeout=600), "export")
        assert "exported" in out
        yield archive
    finally:
        kvmhub("rm", VM)


def _members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_archive_holds_manifest_and_a_flattened_disk(exported: Path, tmp_path: Path) -> None:
    members = _members(exported)
    assert next(iter(members)) == "kvmhub-export.json"
    assert set(members) == {"kvmhub-export.json", "disk-vda.qcow2", "disk-vdb.raw"}
    assert not (exported.parent / f"{exported.name}.partial").exists()
    assert sorted(os.listdir(exported.parent)) == [exported.name]  # no temp files left
    with tarfile.open(exported, "r:gz") as tar:
        manifest = json.load(tar.extractfile("kvmhub-export.json"))  # type: ignore[arg-type]
        tar.extract("disk-vda.qcow2", tmp_path, filter="data")
    assert manifest["vm"] == VM and "<metadata>" in manifest["domain_xml"]
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-f", "qcow2",
                                      str(tmp_path / "disk-vda.qcow2")], capture_output=True, check=True,
                                     timeout=60).stdout)
    assert "backing-filename" not in info  # the linked clone was flattened


def test_import_on_another_host_boots_with_the_file(
    exported: Path, host_factory: Callable[..., TestHost], tiny_image_file: Path
) -> None:
    other = host_factory()

    def cli(*args: str) -> Result:
        return run_kvmhub(other, *args, timeout=600)

    _ok(cli("host", "setup", "--no-network"), "host setup")
    _ok(cli("image", "import", str(tiny_image_file), "--name", "tiny"), "image import")
    missing = cli("import", str(exported))
    assert missing.code == 3 and f"network {LAB_NET!r}" in missing.err and "--network" in missing.err
    _ok(cli("net", "create", "lab2", "--mode", "isolated", "--subnet", "10.78.0.0/24"), "net create")
    _ok(cli("import", str(exported), "--network", "lab2"), "import")
    assert cli("import", str(exported), "--network", "lab2").code == 4  # the name exists now

    shown = cli("show", VM, "--json").json()
    assert [n["network"] for n in shown["nics"]] == ["lab2"]
    assert (shown["disks"][0]["source"]["pool"], shown["disks"][0]["source"]["volume"]) == (
        "default", f"{VM}-disk0.qcow2")
    _ok(cli("start", VM, "--wait", "--timeout", "300"), "start --wait")
    assert _in_guest(other, VM, "cat /mnt/disk/export.txt").strip() == CONTENT

    _ok(cli("import", str(exported), "--as", "vm-export-copy", "--network", "lab2"), "import --as")
    copy = cli("show", "vm-export-copy", "--json").json()
    assert copy["uuid"] != shown["uuid"]
    assert copy["nics"][0]["mac"] != shown["nics"][0]["mac"]
    assert copy["disks"][0]["source"]["volume"] == "vm-export-copy-disk0.qcow2"


def test_import_refuses_a_taken_name_on_the_same_host(exported: Path, kvmhub: Runner) -> None:
    r = kvmhub("import", str(exported))
    assert r.code == 4 and "already exists" in r.err and "--as" in r.err


def test_interrupted_export_leaves_no_file(prepared_host: TestHost, exported: Path, kvmhub: Runner,
                                          tmp_path: Path) -> None:
    target = tmp_path / "broken.tar.gz"
    r = kvmhub("export", VM, "--to", str(target), env={"KVMHUB_INJECT_FAULT": "export-disk"})
    assert r.code == 1 and "injected failure" in r.err
    assert os.listdir(tmp_path) == []

    env = {**os.environ, **prepared_host.env(), "KVMHUB_INJECT_FAULT": "hang:export-disk"}
    proc = subprocess.Popen([*KVMHUB, "export", VM, "--to", str(target)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_able)
    try:
        assert proc.stdout is not None
        assert "hanging" in proc.stdout.readline()  # mid-archive: the .partial file holds a disk already
        assert (tmp_path / "broken.tar.gz.partial").stat().st_size > 1024 * 1024
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "undo: remove broken.tar.gz.partial" in err
    assert os.listdir(tmp_path) == []


# -- hostile archives ----------------------------------------------------------------------------------


def _archive(path: Path, manifest: dict[str, object], members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        raw = json.dumps(manifest).encode()
        info = tarfile.TarInfo("kvmhub-export.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def _regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_hostile_archives_are_refused_and_leave_nothing(
    exported: Path, kvmhub: Runner, prepared_host: TestHost, tmp_path: Path
) -> None:
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", str(evil),
                    "64M"], check=True, timeout=60)
    disk = evil.read_bytes()
    with tarfile.open(exported, "r:gz") as tar:
        manifest = json.load(tar.extractfile("kvmhub-export.json"))  # type: ignore[arg-type]
        seed = tar.extractfile("disk-vdb.raw").read()  # type: ignore[union-attr]
    vda = next(d for d in manifest["disks"] if d["target"] == "vda")
    vda.update(bytes=len(disk), sha256=hashlib.sha256(disk).hexdigest())
    link = tarfile.TarInfo("disk-vda.qcow2")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    cases = {
        "backing file": (_regular("disk-vda.qcow2", disk), "backing file"),
        "traversal": (_regular("../../disk-vda.qcow2", disk), "outside the archive"),
        "link": ((link, b""), "is a link"),
        "bad checksum": (_regular("disk-vda.qcow2", disk[:-1] + b"x"), "checksum"),
    }
    volumes_before = prepared_host.virsh("vol-list", "default").stdout
    for what, (member, expected) in cases.items():
        path = _archive(tmp_path / f"{what.replace(' ', '-')}.tar.gz", manifest,
                        [member, _regular("disk-vdb.raw", seed)])
        r = kvmhub("import", str(path), "--as", "vm-hostile")
        assert r.code == 2 and expected in r.err and "not a safe kvmhub export" in r.err, (what, r.err)
        assert kvmhub("show", "vm-hostile").code == 3, what
        assert prepared_host.virsh("vol-list", "default").stdout == volumes_before, what
