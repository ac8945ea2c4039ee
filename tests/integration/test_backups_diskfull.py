"""A backup when the target fills: a clear error, the guest keeps running, nothing half-made, the disk clean.

The backup directory is an 8 MiB tmpfs mounted inside the test host's mount namespace. kvmhub resolves a
backup directory as ``$KVMHUB_HOST_ROOT`` + DIR (``/proc/<holder>/root/DIR``), so it sees the same tmpfs
QEMU writes into. The running guest's disk holds far more than that (the tiny system plus 20 MiB of random
data), so its full backup runs out of space part way through the job. Then, with a full backup in the
grown tmpfs and the rest of it filled, an incremental one fails as libvirt creates its file: the chain,
manifest and checkpoint of the full backup must be untouched, and the next incremental must follow it.

The tmpfs is mounted before the guest starts: QEMU runs in a mount namespace of its own, copied from the
test host's when the guest starts, and the test host's mounts are private (no propagation), so a tmpfs
mounted later would exist for kvmhub and libvirtd but not for QEMU.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import KvmhubError
from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.guest import guest_run

VM = "vm-backup-diskfull"
DIR = "/var/lib/libvirt/backup-small"  # inside the test host; /var/lib/libvirt is the host's own
ROOMY = "96M"  # the tmpfs grown to this holds a full backup of the guest (~40 MiB)


def _ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=600)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.out + r.err


def _agent_answers(host: TestHost, vm: str, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return guest_run(host, vm, ["true"], timeout=30).code == 0
        except KvmhubError:
            time.sleep(2)
    return False


def _guest(host: TestHost, vm: str, script: str, timeout: float = 120) -> str:
    assert _agent_answers(host, vm), f"the agent of {vm} does not answer"
    r = guest_run(host, vm, ["sh", "-c", script], timeout=timeout)
    assert r.code == 0, f"{script!r}: {r.err}"
    return r.out


def _disk_path(host: TestHost, kvmhub: Runner, vm: str) -> str:
    """The path (inside the test host) of the VM's vda: its pool volume's path, as libvirt has it."""
    vda = next(d for d in kvmhub("show", vm, "--json").json()["disks"] if d["target"] == "vda")
    source = vda["source"]
    if source.get("path"):
        return str(source["path"])
    return host.virsh("vol-path", "--pool", source["pool"], source["volume"], timeout=60).stdout.strip()


def _checkpoints(host: TestHost, vm: str) -> list[str]:
    out = host.virsh("checkpoint-list", vm, "--name", timeout=60).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _files(where: Path) -> dict[str, str]:
    """Every file in the directory (hidden ones too) and a digest of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in where.iterdir()}


def _failed_cleanly(host: TestHost, kvmhub: Runner, vm: str, r: Result, small_dir: Path,
                    files_before: dict[str, str], checkpoints_before: list[str]) -> None:
    """The failed backup said why and what to do, left the guest running and nothing of itself behind."""
    assert r.code != 0, r.out + r.err
    assert "no space left" in r.err.lower(), r.err
    assert "ran out of space" in r.err, r.err  # the cause in words
    assert "fix:" in r.err and "free space" in r.err, r.err  # and what to do
    assert "Traceback" not in r.err, r.err
    # the guest runs on (or was resumed, and said so), and its agent answers
    state = kvmhub("show", vm, "--json").json()["state"]
    assert state == "running" or "resumed" in r.err, (state, r.err)
    assert _agent_answers(host, vm), "the guest stopped answering after the failed backup"
    # nothing half-made: no partial qcow2, no new or changed manifest (nor its temp file), no new checkpoint
    assert _files(small_dir) == files_before, r.err
    assert _checkpoints(host, vm) == checkpoints_before, r.err
    # the VM's own disk is intact
    disk = _disk_path(host, kvmhub, vm)
    check = host.run(["qemu-img", "check", "-U", "-f", "qcow2", disk], check=False, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def _grow(host: TestHost) -> None:
    host.run(["mount", "-o", f"remount,size={ROOMY}", DIR], timeout=30)


def _fill(host: TestHost) -> None:
    """Fill the tmpfs to the last byte with a file `filler`."""
    host.run(["dd", "if=/dev/zero", f"of={DIR}/filler", "bs=1M"], check=False, timeout=120)
    assert host.run(["df", "--output=avail", DIR], timeout=30).stdout.split()[-1] == "0"


@pytest.fixture(scope="module")
def small_dir(prepared_host: TestHost) -> Iterator[Path]:
    """An 8 MiB tmpfs at DIR inside the test host; the directory as seen from here."""
    host = prepared_host
    host.run(["mkdir", "-p", DIR])
    host.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", DIR])
    try:
        yield host.inside(DIR)
    finally:
        host.run(["umount", "-l", DIR], check=False, timeout=60)
        host.run(["rmdir", DIR], check=False, timeout=60)


@pytest.fixture(scope="module")
def running_vm(prepared_host: TestHost, kvmhub: Runner, small_dir: Path) -> Iterator[str]:
    """A running tiny guest, started after the tmpfs is mounted (so its QEMU sees the tmpfs too)."""
    _ok(kvmhub, "create", VM, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--wait",
        "--timeout", "240")
    try:
        yield VM
    finally:
        kvmhub("rm", VM, timeout=300)


def test_full_backup_into_a_small_directory_fails_cleanly_and_the_guest_runs_on(
    prepared_host: TestHost, kvmhub: Runner, running_vm: str, small_dir: Path
) -> None:
    host, vm = prepared_host, running_vm
    # the guest's disk now holds ~40 MiB: far more than the 8 MiB tmpfs
    _guest(host, vm, "dd if=/dev/urandom of=/mnt/disk/fill.bin bs=65536 count=320 2>/dev/null && sync")
    assert _checkpoints(host, vm) == []
    assert _files(small_dir) == {}

    r = kvmhub("backup", vm, "--to", DIR, timeout=600)
    _failed_cleanly(host, kvmhub, vm, r, small_dir, {}, [])
    assert host.run(["df", "--output=used", DIR], timeout=30).stdout.split()[-1] == "0"
    assert kvmhub("backup", "ls", vm, "--json").json() == []

    # with room the same backup into the same directory works: nothing was left behind that blocks it
    _grow(host)
    assert f"full backup 0001 of {vm}" in _ok(kvmhub, "backup", vm, "--to", DIR)
    assert "intact" in _ok(kvmhub, "backup", "verify", DIR)
    assert len(_checkpoints(host, vm)) == 1
    assert kvmhub("show", vm, "--json").json()["state"] == "running"


def test_incremental_backup_into_a_full_directory_keeps_the_chain(
    prepared_host: TestHost, kvmhub: Runner, running_vm: str, small_dir: Path
) -> None:
    host, vm = prepared_host, running_vm
    if not (small_dir / "kvmhub-backup.json").exists():  # run on its own: take the full backup first
        _grow(host)
        _ok(kvmhub, "backup", vm, "--to", DIR)
    _guest(host, vm, "dd if=/dev/urandom of=/mnt/disk/more.bin bs=65536 count=64 2>/dev/null && sync")
    _fill(host)
    files_before, checkpoints_before = _files(small_dir), _checkpoints(host, vm)
    assert len(checkpoints_before) == 1

    r = kvmhub("backup", vm, "--to", DIR, "--incremental", timeout=600)
    _failed_cleanly(host, kvmhub, vm, r, small_dir, files_before, checkpoints_before)
    points = kvmhub("backup", "ls", vm, "--dir", DIR, "--json").json()
    assert [(p["name"], p["kind"], p["checkpoint_present"]) for p in points] == [("0001", "full", True)]

    # with room again the incremental follows the full backup as if nothing had happened
    host.run(["rm", f"{DIR}/filler"], timeout=30)
    assert f"incremental backup 0002 of {vm}" in _ok(kvmhub, "backup", vm, "--to", DIR, "--incremental")
    assert "intact" in _ok(kvmhub, "backup", "verify", DIR)
    points = kvmhub("backup", "ls", vm, "--dir", DIR, "--json").json()
    assert [(p["name"], p["kind"], p["parent"]) for p in points] == [
        ("0001", "full", None), ("0002", "incremental", "0001")]
    assert kvmhub("show", vm, "--json").json()["state"] == "running"
