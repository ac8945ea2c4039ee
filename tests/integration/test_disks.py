"""Disks on VMs through the kvmhub CLI, checked from inside a real tiny guest: a VM booted in place from an
existing volume (`create --vol`), a disk hot-plugged, written, grown live and unplugged, the refusals
(sata hot-plug, shrinking, bad URLs and volumes), and the same operations on a shut-off VM."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner
from tests.integration.guest import guest_run

VM = "diskvm"
BOOT_VOL = "diskvm-own-boot.qcow2"
MIB = 1024**2


def ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args)
    assert r.code == 0, f"kvmhub {' '.join(args)}: {r.err}{r.out}"
    return r.out + r.err


def vol_capacity(host: TestHost, name: str) -> int:
    out = host.virsh("vol-info", "--bytes", "--pool", "default", name).stdout
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Capacity")))


def has_vol(host: TestHost, name: str) -> bool:
    return host.virsh("vol-info", "--pool", "default", name, check=False).returncode == 0


def wait_agent(host: TestHost, vm: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    with Hypervisor(host.uri) as hv:
        dom = hv_domains.lookup(hv, vm)
        while not dom.agent_ping():
            assert time.monotonic() < deadline, f"the guest agent of {vm} never answered"
            time.sleep(1)


def guest_sectors(host: TestHost, vm: str, dev: str) -> int | None:
    """The size of /dev/<dev> in 512-byte sectors as the guest kernel sees it; None when it has no such disk."""
    r = guest_run(host, vm, ["cat", f"/sys/block/{dev}/size"])
    return int(r.out.strip()) if r.code == 0 else None


def wait_guest_sectors(host: TestHost, vm: str, dev: str, want: int | None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    seen = guest_sectors(host, vm, dev)
    while seen != want:
        assert time.monotonic() < deadline, f"{vm} sees {dev} as {seen} sectors, not {want}"
        time.sleep(1)
        seen = guest_sectors(host, vm, dev)


def disk_row(kvmhub: Runner, vm: str, target: str) -> dict[str, object] | None:
    rows = kvmhub("disk", "ls", vm, "--json").json()
    return next((d for d in rows if d["target"] == target), None)


@pytest.fixture(scope="module")
def disk_vm(prepared_host: TestHost, kvmhub: Runner, tiny_image_file: Path) -> Iterator[str]:
    """A tiny guest booted from its own volume in the disks pool (`create --vol`: used in place)."""
    shutil.copyfile(tiny_image_file, prepared_host.images_dir / BOOT_VOL)
    prepared_host.virsh("pool-refresh", "default")
    try:
        ok(kvmhub, "create", VM, "--vol", f"default/{BOOT_VOL}", "--memory", "256M", "--wait", "--timeout", "240")
        wait_agent(prepared_host, VM)
        yield VM
    finally:
        kvmhub("rm", VM)
        kept = has_vol(prepared_host, BOOT_VOL)
        try:
            prepared_host.virsh("vol-delete", "--pool", "default", BOOT_VOL, check=False)
        except KvmhubError:
            pass
    assert kept, "removing the VM deleted the volume it booted from, which it does not own"


def test_create_vol_boots_the_volume_in_place(prepared_host: TestHost, kvmhub: Runner, disk_vm: str) -> None:
    row = disk_row(kvmhub, disk_vm, "vda")
    assert row is not None
    assert row["source"] == f"default/{BOOT_VOL}" and row["format"] == "qcow2" and row["owned"] is False
    assert not has_vol(prepared_host, f"{disk_vm}-disk0.qcow2"), "--vol must not clone a disk"
    # the guest runs from that volume: its agent answers (the fixture waited for it)
    # a volume another VM uses, one of the image store, and malformed references are refused
    r = kvmhub("create", "diskvm2", "--vol", f"default/{BOOT_VOL}", "--no-start")
    assert r.code == 4 and "already a disk of diskvm" in r.err, r.err
    r = kvmhub("create", "diskvm2", "--vol", "kvmhub-images/tiny.qcow2", "--no-start")
    assert r.code == 2 and "images" in r.err, r.err
    r = kvmhub("create", "diskvm2", "--vol", "default/no-such.qcow2", "--no-start")
    assert r.code == 3 and "no-such.qcow2" in r.err, r.err
    r = kvmhub("create", "diskvm2", "--vol", "nopool", "--no-start")
    assert r.code == 2 and "POOL/VOLUME" in r.err, r.err
    r = kvmhub("create", "diskvm2", "--image", "tiny", "--vol", f"default/{BOOT_VOL}", "--no-start")
    assert r.code == 2, r.err
    assert kvmhub("show", "diskvm2").code == 3, "a refused create left a VM behind"


def test_hotplug_write_resize_unplug(prepared_host: TestHost, kvmhub: Runner, disk_vm: str) -> None:
    out = ok(kvmhub, "disk", "add", disk_vm, "--size", "64M")
    assert "vdc" in out and "attached live" in out, out
    vol = f"{disk_vm}-disk1.qcow2"
    assert has_vol(prepared_host, vol)
    row = disk_row(kvmhub, disk_vm, "vdc")
    assert row is not None and row["owned"] is True and row["capacity"] == 64 * MIB
    wait_guest_sectors(prepared_host, disk_vm, "vdc", 64 * MIB // 512)

    # the guest writes to it and reads the bytes back
    w = guest_run(prepared_host, disk_vm, ["/bin/sh", "-c", "echo kvmhub-disk-marker > /dev/vdc && sync"])
    assert w.code == 0, w.err
    back = guest_run(prepared_host, disk_vm, ["head", "-c", "18", "/dev/vdc"])
    assert back.out == "kvmhub-disk-marker", back

    # grown live: the guest sees the new size at once, the volume follows
    out = ok(kvmhub, "disk", "resize", disk_vm, "vdc", "128M")
    assert "live" in out, out
    wait_guest_sectors(prepared_host, disk_vm, "vdc", 128 * MIB // 512)
    assert vol_capacity(prepared_host, vol) == 128 * MIB
    r = kvmhub("disk", "resize", disk_vm, "vdc", "32M")
    assert r.code == 2 and "shrink" in r.err, r.err
    assert guest_sectors(prepared_host, disk_vm, "vdc") == 128 * MIB // 512

    # unplugged live: gone in the guest, the volume deleted
    out = ok(kvmhub, "disk", "rm", disk_vm, "vdc")
    assert "detached live" in out and vol in out, out
    wait_guest_sectors(prepared_host, disk_vm, "vdc", None)
    assert not has_vol(prepared_host, vol)
    assert disk_row(kvmhub, disk_vm, "vdc") is None


def secret_uuids(host: TestHost) -> set[str]:
    return {line.split()[0] for line in host.virsh("secret-list").stdout.splitlines() if line.strip()}


def test_encrypted_hotplug(prepared_host: TestHost, kvmhub: Runner, disk_vm: str) -> None:
    secrets_before = secret_uuids(prepared_host)
    out = ok(kvmhub, "disk", "add", disk_vm, "--size", "32M", "--encrypt")
    assert "vdc" in out and "attached live" in out, out
    vol = f"{disk_vm}-disk1.qcow2"
    new_secrets = secret_uuids(prepared_host) - secrets_before
    assert len(new_secrets) == 1
    assert "<encryption format='luks'>" in prepared_host.virsh("vol-dumpxml", "--pool", "default", vol).stdout
    row = disk_row(kvmhub, disk_vm, "vdc")
    assert row is not None and row["encrypted"] is True and row["owned"] is True
    wait_guest_sectors(prepared_host, disk_vm, "vdc", 32 * MIB // 512)
    w = guest_run(prepared_host, disk_vm, ["/bin/sh", "-c", "echo kvmhub-luks-marker > /dev/vdc && sync"])
    assert w.code == 0, w.err
    assert guest_run(prepared_host, disk_vm, ["head", "-c", "18", "/dev/vdc"]).out == "kvmhub-luks-marker"
    # the bytes on the host are ciphertext
    assert b"kvmhub-luks-marker" not in (prepared_host.images_dir / vol).read_bytes()
    ok(kvmhub, "disk", "rm", disk_vm, "vdc")
    wait_guest_sectors(prepared_host, disk_vm, "vdc", None)
    assert not has_vol(prepared_host, vol)
    assert secret_uuids(prepared_host) == secrets_before, "the disk's key outlived the disk"


def test_scsi_hotplug_and_refusals(prepared_host: TestHost, kvmhub: Runner, disk_vm: str) -> None:
    # the first scsi disk brings its virtio-scsi controller along
    out = ok(kvmhub, "disk", "add", disk_vm, "--size", "16M", "--bus", "scsi")
    assert "sda" in out and "attached live" in out, out
    wait_guest_sectors(prepared_host, disk_vm, "sda", 16 * MIB // 512)
    ok(kvmhub, "disk", "rm", disk_vm, "sda")
    assert not has_vol(prepared_host, f"{disk_vm}-disk1.qcow2")

    before = kvmhub("disk", "ls", disk_vm, "--json").json()
    r = kvmhub("disk", "add", disk_vm, "--size", "16M", "--bus", "sata")
    assert r.code == 4 and "hot-plug" in r.err and "--bus virtio" in r.err, r.err
    r = kvmhub("disk", "rm", disk_vm, "vda")
    assert r.code == 4 and "boot disk" in r.err, r.err
    for url, why in (
        ("ftp://127.0.0.1/x.img", "not 'ftp'"),
        ("nfs://127.0.0.1/file.raw", "EXPORT/FILE"),
        ("nfs://127.0.0.1:2049/export/file.raw", "rpcbind"),
        ("iscsi://127.0.0.1/notaniqn/0", "IQN"),
        ("nbd://user:secret@127.0.0.1/x", "credentials"),
        ("nbd://127.0.0.1:99999/x", "port"),
    ):
        r = kvmhub("disk", "add", disk_vm, "--url", url)
        assert r.code == 2 and why in r.err, (url, r.err)
    r = kvmhub("disk", "add", disk_vm, "--vol", f"default/{BOOT_VOL}")
    assert r.code == 4 and "already a disk" in r.err, r.err
    r = kvmhub("disk", "add", disk_vm, "--size", "16M", "--vol", "default/x")
    assert r.code == 2, r.err
    assert kvmhub("disk", "ls", disk_vm, "--json").json() == before, "a refused disk add changed the VM"


def test_shut_off_vm(prepared_host: TestHost, kvmhub: Runner) -> None:
    vm = "diskoff"
    ok(kvmhub, "create", vm, "--image", "tiny", "--no-start", "--memory", "192M")
    try:
        out = ok(kvmhub, "disk", "add", vm, "--size", "16M", "--bus", "sata")
        assert "sda" in out and "shut off" in out, out
        vol = f"{vm}-disk1.qcow2"
        # a failure after the attach undoes it all: no disk, no volume, no secret
        before, secrets_before = kvmhub("disk", "ls", vm, "--json").json(), secret_uuids(prepared_host)
        r = kvmhub("disk", "add", vm, "--size", "16M", "--encrypt", env={"KVMHUB_INJECT_FAULT": "disk-attach"})
        assert r.code == 1 and "undo" in r.err, r.err
        assert kvmhub("disk", "ls", vm, "--json").json() == before
        assert secret_uuids(prepared_host) == secrets_before
        assert not has_vol(prepared_host, f"{vm}-disk2.qcow2")
        out = ok(kvmhub, "disk", "resize", vm, "sda", "48M")
        assert "shut off" in out, out
        assert vol_capacity(prepared_host, vol) == 48 * MIB
        # the pool's free space bounds a raw disk's growth; a sparse qcow2 grows with a warning
        ok(kvmhub, "disk", "add", vm, "--size", "16M", "--format", "raw", "--bus", "sata")
        r = kvmhub("disk", "resize", vm, "sdb", "900T")
        assert r.code == 5 and "not enough space" in r.err, r.err
        assert vol_capacity(prepared_host, f"{vm}-disk2.img") == 16 * MIB
        ok(kvmhub, "disk", "rm", vm, "sdb")
        out = ok(kvmhub, "disk", "resize", vm, "sda", "900T")
        assert "warning: pool default has" in out and "fills as the guest writes" in out, out
        assert vol_capacity(prepared_host, vol) == 900 * 1024**4
        # a scsi disk that fails after its controller was added takes the controller away again
        r = kvmhub("disk", "add", vm, "--size", "16M", "--bus", "scsi", env={"KVMHUB_INJECT_FAULT": "disk-attach"})
        assert r.code == 1 and "undo: remove the scsi controller" in r.err, r.err
        assert "type='scsi'" not in prepared_host.virsh("dumpxml", "--inactive", vm).stdout
        # an existing volume attached: not owned, so kept when the disk goes
        prepared_host.virsh("vol-create-as", "default", "diskoff-extra.img", "8M", "--format", "raw")
        ok(kvmhub, "disk", "add", vm, "--vol", "default/diskoff-extra.img", "--readonly")
        row = disk_row(kvmhub, vm, "vdc")
        assert row is not None and row["owned"] is False and row["readonly"] is True and row["format"] == "raw"
        ok(kvmhub, "disk", "rm", vm, "vdc")
        assert has_vol(prepared_host, "diskoff-extra.img")
        # a symlink planted in the pool's directory, pointing at a host file, is not a volume to attach
        prepared_host.run(["sh", "-c", "echo SECRET > /var/lib/libvirt/diskoff-secret && "
                           "ln -s /var/lib/libvirt/diskoff-secret /var/lib/libvirt/images/diskoff-planted"])
        prepared_host.virsh("pool-refresh", "default")
        before = kvmhub("disk", "ls", vm, "--json").json()
        r = kvmhub("disk", "add", vm, "--vol", "default/diskoff-planted")
        assert r.code == 2 and "symlink pointing outside" in r.err, r.err
        assert kvmhub("disk", "ls", vm, "--json").json() == before
        assert "diskoff-secret" not in prepared_host.virsh("dumpxml", "--inactive", vm).stdout
        # qcow2 volumes that point at other host files are refused
        images = prepared_host.images_dir
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname",
                        str(images / "diskoff-backed.qcow2"), "8M"], check=True)
        # made with a scratch data file, then only the header is pointed at the host file (create would truncate it)
        datafile = images / "diskoff-datafile.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={images}/diskoff-scratch.raw",
                        str(datafile), "8M"], check=True)
        subprocess.run(["qemu-img", "amend", "-q", "-f", "qcow2", "-o", "data_file=/etc/hostname", str(datafile)],
                       check=True)
        (images / "diskoff-scratch.raw").unlink()
        prepared_host.virsh("pool-refresh", "default")
        refused = (("diskoff-backed.qcow2", "backed by /etc/hostname"), ("diskoff-datafile.qcow2", "in another file"))
        for name, why in refused:
            r = kvmhub("disk", "add", vm, "--vol", f"default/{name}")
            assert r.code == 2 and why in r.err, r.err
        out = ok(kvmhub, "disk", "rm", vm, "sda", "--keep")
        assert has_vol(prepared_host, vol)
        xml = prepared_host.virsh("dumpxml", vm).stdout
        assert "sda" not in xml and vol not in xml
    finally:
        kvmhub("rm", vm)
        for name in ("diskoff-backed.qcow2", "diskoff-datafile.qcow2", "diskoff-planted"):
            (prepared_host.images_dir / name).unlink(missing_ok=True)
        prepared_host.run(["rm", "-f", "/var/lib/libvirt/diskoff-secret"])
        prepared_host.virsh("pool-refresh", "default")
        for v in ("diskoff-extra.img", f"{vm}-disk1.qcow2"):
            prepared_host.virsh("vol-delete", "--pool", "default", v, check=False)
