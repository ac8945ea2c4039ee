"""Backups through the kvmhub CLI on a private test host: full + two incrementals of a running tiny guest.

Known files are written on the guest's FAT boot disk (/mnt/disk) before each backup. Every point is then
restored as a new VM and its disk read offline (qemu-img + mtools); the latest is restored in place and
booted. The incrementals must be about as large as what changed, and far smaller than the full backup.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import KvmhubError
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner
from tests.integration.guest import guest_run

MIB = 1024 * 1024
# point -> (file written before it, its size in MiB)
WRITES = {"0001": ("a.bin", 1), "0002": ("b.bin", 1), "0003": ("c.bin", 8)}


def _ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=600)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.out + r.err


def _guest(host: TestHost, vm: str, script: str) -> str:
    deadline = time.monotonic() + 180
    while True:
        try:
            r = guest_run(host, vm, ["sh", "-c", script], timeout=120)
            break
        except KvmhubError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)  # the agent is not up yet (a guest that just booted)
    assert r.code == 0, f"{script!r}: {r.err}"
    return r.out


def _write(host: TestHost, vm: str, point: str) -> None:
    name, mib = WRITES[point]
    _guest(host, vm, f"dd if=/dev/urandom of=/mnt/disk/{name} bs=65536 count={16 * mib} 2>/dev/null && "
                     f"echo {point} > /mnt/disk/marker.txt && sync")


def _guest_md5(host: TestHost, vm: str, name: str) -> str:
    return _guest(host, vm, f"md5sum /mnt/disk/{name}").split()[0]


def _disk_files(disk: Path, work: Path) -> dict[str, bytes]:
    """Every file of a restored FAT disk image, read offline."""
    raw = work / f"{disk.stem}.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(disk), str(raw)], check=True,
                   timeout=120)
    out: dict[str, bytes] = {}
    for name in ["marker.txt", *(w[0] for w in WRITES.values())]:
        got = subprocess.run(["mcopy", "-n", "-i", str(raw), f"::/{name}", "-"], capture_output=True,
                             timeout=60, check=False)
        if got.returncode == 0:
            out[name] = got.stdout
    raw.unlink()
    return out


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("backups")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def chain(booted_vm: str, kvmhub: Runner, prepared_host: TestHost, backup_dir: Path) -> dict[str, str]:
    """Full + two incremental backups of the guest; returns the guest's md5 of each file written.

    The full one is of the stopped VM (kvmhub upgrades its qcow2 v2 disk for dirty bitmaps on the way), the
    incremental ones of the running VM.
    """
    host, vm = prepared_host, booted_vm
    sums: dict[str, str] = {}
    for point, (name, _mib) in WRITES.items():
        _write(host, vm, point)
        sums[name] = _guest_md5(host, vm, name)
        if point == "0001":
            _ok(kvmhub, "stop", vm, "--force", "--timeout", "60")
            out = _ok(kvmhub, "backup", vm, "--to", str(backup_dir))
            _ok(kvmhub, "start", vm, "--wait", "--timeout", "240")
        else:
            out = _ok(kvmhub, "backup", vm, "--to", str(backup_dir), "--incremental")
        assert f"backup {point} of {vm}" in out
    return sums


def test_backup_ls_shows_the_chain(chain: dict[str, str], booted_vm: str, kvmhub: Runner, backup_dir: Path) -> None:
    points = json.loads(kvmhub("backup", "ls", booted_vm, "--json").out)
    assert [(p["name"], p["kind"], p["parent"]) for p in points] == [
        ("0001", "full", None), ("0002", "incremental", "0001"), ("0003", "incremental", "0002")]
    assert all(p["directory"] == str(backup_dir) for p in points)
    assert points[-1]["checkpoint_present"] is True
    table = kvmhub("backup", "ls", booted_vm).out
    assert "0003" in table and "incremental" in table


def test_incrementals_are_as_small_as_what_changed(chain: dict[str, str], booted_vm: str, kvmhub: Runner) -> None:
    points = {p["name"]: p["bytes"] for p in kvmhub("backup", "ls", booted_vm, "--json").json()}
    full = points["0001"]
    for point in ("0002", "0003"):
        changed = WRITES[point][1] * MIB
        # the changed data plus FAT/directory clusters and qcow2 metadata, nothing of the rest of the disk
        assert changed <= points[point] <= changed + 3 * MIB, (point, points[point])
    assert points["0002"] < points["0003"] < full
    assert full > 10 * MIB  # the whole guest system is in it


def test_verify_passes_then_catches_a_flipped_byte(
    chain: dict[str, str], kvmhub: Runner, backup_dir: Path, tmp_path: Path
) -> None:
    assert "intact" in _ok(kvmhub, "backup", "verify", str(backup_dir))
    copy = tmp_path / "copy"
    shutil.copytree(backup_dir, copy)
    victim = copy / "0002-incremental-vda.qcow2"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = kvmhub("backup", "verify", str(copy))
    assert r.code == 1 and "0002-incremental-vda.qcow2: checksum differs" in r.err


def test_each_point_restores_to_what_the_guest_had(
    chain: dict[str, str], booted_vm: str, kvmhub: Runner, prepared_host: TestHost, backup_dir: Path, tmp_path: Path
) -> None:
    for n, point in enumerate(WRITES, start=1):
        copy = f"{booted_vm}-r{n}"
        _ok(kvmhub, "backup", "restore", booted_vm, "--from", str(backup_dir), "--at", point, "--as", copy)
        try:
            files = _disk_files(prepared_host.images_dir / f"{copy}-vda.qcow2", tmp_path)
        finally:
            _ok(kvmhub, "rm", copy)
        assert files["marker.txt"].decode().strip() == point
        expected = [w[0] for p, w in WRITES.items() if p <= point]
        assert sorted(n for n in files if n != "marker.txt") == sorted(expected)
        for name in expected:
            assert hashlib.md5(files[name]).hexdigest() == chain[name], (point, name)  # noqa: S324


def test_restore_in_place_refuses_a_running_vm_then_boots_the_point(
    chain: dict[str, str], booted_vm: str, kvmhub: Runner, prepared_host: TestHost, backup_dir: Path
) -> None:
    host, vm = prepared_host, booted_vm
    r = kvmhub("backup", "restore", vm, "--from", str(backup_dir))
    assert r.code == 4 and "running" in r.err and "kvmhub stop" in r.err
    _guest(host, vm, "echo later > /mnt/disk/marker.txt && rm /mnt/disk/a.bin && sync")
    _ok(kvmhub, "kill", vm)
    _ok(kvmhub, "backup", "restore", vm, "--from", str(backup_dir), "--at", "2")
    _ok(kvmhub, "start", vm, "--wait", "--timeout", "240")
    assert _guest(host, vm, "cat /mnt/disk/marker.txt").strip() == "0002"
    assert _guest_md5(host, vm, "a.bin") == chain["a.bin"]
    assert _guest(host, vm, "ls /mnt/disk").split().count("c.bin") == 0
    # the disk was replaced, so its checkpoints went with it: the next backup must be a full one
    r = kvmhub("backup", vm, "--to", str(backup_dir), "--incremental")
    assert r.code == 4 and "full backup" in r.err
