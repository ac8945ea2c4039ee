"""Storage pools and volumes through the kvmhub CLI on a private test host.

One dir pool is shared by the module; a second one lives on an 8 MiB tmpfs mounted inside the test host to
run out of space. netfs and logical pools run where the kernel has an NFS client / device-mapper; here
their up-front refusal is checked and the pool itself is skipped, naming the missing kernel feature.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.models import PoolSpec
from kvmhub.services.storage import pools as storage
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner

POOL = "h3pool"
POOL_DIR = "/var/lib/libvirt/h3pool"
SMALL = "h3small"
SMALL_DIR = "/var/lib/libvirt/h3small"


def ok(kvmhub: Runner, *args: str) -> str:
    r = kvmhub(*args, timeout=300)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r.out


def pools(kvmhub: Runner) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in kvmhub("pool", "ls", "--json").json()}


def volumes(kvmhub: Runner, pool: str) -> dict[str, dict[str, object]]:
    return {v["name"]: v for v in kvmhub("vol", "ls", pool, "--json").json()}


@pytest.fixture(scope="module")
def pool(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """The dir pool POOL, made through the CLI; removed (with its data) after the module."""
    ok(kvmhub, "pool", "create", POOL, "--type", "dir", "--path", POOL_DIR)
    try:
        yield POOL
    finally:
        kvmhub("pool", "rm", POOL, "--delete-data")


def test_dir_pool_lifecycle(prepared_host: TestHost, kvmhub: Runner) -> None:
    host, name, path = prepared_host, "h3life", "/var/lib/libvirt/h3life"
    ok(kvmhub, "pool", "create", name, "--type", "dir", "--path", path)
    try:
        listed = pools(kvmhub)[name]
        assert (listed["type"], listed["state"], listed["autostart"], listed["path"]) == ("dir", "active", True, path)
        assert int(listed["available_bytes"]) > 0  # type: ignore[call-overload]
        assert host.inside(path).is_dir()
        assert kvmhub("pool", "show", name, "--json").json()["volumes"] == 0
        host.run(["qemu-img", "create", "-f", "raw", f"{path}/dropped.raw", "1M"])  # behind libvirt's back
        assert "1 volumes" in kvmhub("pool", "refresh", name).err
        ok(kvmhub, "pool", "stop", name)
        assert pools(kvmhub)[name]["state"] == "inactive"
        ok(kvmhub, "pool", "start", name)
        assert pools(kvmhub)[name]["state"] == "active"
        r = kvmhub("pool", "rm", name, "--delete-data")
        assert r.code == 0, r.err
        assert name not in pools(kvmhub)
        assert not host.inside(path).exists()
    finally:
        kvmhub("pool", "rm", name, "--delete-data")


def test_a_pool_that_fails_is_undone(prepared_host: TestHost, kvmhub: Runner) -> None:
    host, blocker = prepared_host, "/var/lib/libvirt/h3-not-a-dir"
    host.run(["sh", "-c", f"echo keep > {blocker}"])
    try:
        r = kvmhub("pool", "create", "h3bad", "--type", "dir", "--path", f"{blocker}/pool")
        assert r.code != 0
        assert "undo: undefine pool h3bad" in r.err, r.err
        assert "h3bad" not in pools(kvmhub)
        assert host.inside(blocker).read_text() == "keep\n"
    finally:
        host.run(["rm", "-f", blocker])


def test_volume_create_resize_clone_upload_download(
    kvmhub: Runner, pool: str, tiny_image_file: Path, tmp_path: Path
) -> None:
    ok(kvmhub, "vol", "create", f"{pool}/base.qcow2", "--size", "64M")
    ok(kvmhub, "vol", "resize", f"{pool}/base.qcow2", "96M")
    ok(kvmhub, "vol", "resize", f"{pool}/base.qcow2", "+32M")
    r = kvmhub("vol", "resize", f"{pool}/base.qcow2", "16M")
    assert r.code == 2 and "--shrink" in r.err and "shrink" in r.err, r.err
    base = kvmhub("vol", "show", f"{pool}/base.qcow2", "--json").json()
    assert (base["format"], base["capacity_bytes"]) == ("qcow2", 128 * 1024**2)

    ok(kvmhub, "vol", "clone", f"{pool}/base.qcow2", "full.qcow2")
    ok(kvmhub, "vol", "clone", f"{pool}/base.qcow2", f"{pool}/linked.qcow2", "--linked")
    vols = volumes(kvmhub, pool)
    assert vols["full.qcow2"]["backing"] is None and vols["full.qcow2"]["capacity_bytes"] == 128 * 1024**2
    assert vols["linked.qcow2"]["backing_volume"] == f"{pool}/base.qcow2"
    assert kvmhub("vol", "show", f"{pool}/base.qcow2", "--json").json()["backs"] == [f"{pool}/linked.qcow2"]
    r = kvmhub("vol", "rm", f"{pool}/base.qcow2")
    assert r.code == 4 and f"{pool}/linked.qcow2" in r.err, r.err
    ok(kvmhub, "vol", "rm", f"{pool}/linked.qcow2")
    ok(kvmhub, "vol", "rm", f"{pool}/base.qcow2")

    data = tmp_path / "data.raw"
    data.write_bytes(os.urandom(3 * 1024**2 + 512))
    r = kvmhub("vol", "upload", f"{pool}/data.raw", str(data))
    assert r.code == 0, r.err
    ok(kvmhub, "vol", "clone", f"{pool}/data.raw", "copy.raw")
    back = tmp_path / "back.raw"
    ok(kvmhub, "vol", "download", f"{pool}/copy.raw", str(back))
    assert back.read_bytes() == data.read_bytes()
    assert kvmhub("vol", "download", f"{pool}/copy.raw", str(back)).code == 4  # no silent overwrite

    ok(kvmhub, "vol", "upload", f"{pool}/tiny.qcow2", str(tiny_image_file))
    tiny = kvmhub("vol", "show", f"{pool}/tiny.qcow2", "--json").json()
    assert tiny["format"] == "qcow2" and tiny["capacity_bytes"] > tiny_image_file.stat().st_size
    hostile = tmp_path / "hostile.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", str(hostile)],
                   check=True, capture_output=True)
    r = kvmhub("vol", "upload", f"{pool}/hostile.qcow2", str(hostile))
    assert r.code == 2 and "backing file" in r.err, r.err
    assert "hostile.qcow2" not in volumes(kvmhub, pool)


def test_names_and_paths_that_leave_the_pool_are_refused(
    prepared_host: TestHost, kvmhub: Runner, pool: str, tmp_path: Path
) -> None:
    host = prepared_host
    before = volumes(kvmhub, pool)
    for ref in (f"{pool}/../escape", "/etc/passwd"):  # every other shape is in tests/unit/test_xml_pool.py
        r = kvmhub("vol", "create", ref, "--size", "1M")
        assert r.code == 2 and "invalid volume" in r.err, (ref, r.err)
    for path in ("/var/lib/libvirt/../../etc", "/", "/etc/ssh", "/root/.ssh", "/var/lib/libvirt/qemu"):
        r = kvmhub("pool", "create", "h3esc", "--type", "dir", "--path", path)
        assert r.code == 2 and "invalid pool path" in r.err, (path, r.err)
    # a path that reads fine but is a symlink to a system directory
    link = "/var/lib/libvirt/h3-link"
    host.run(["ln", "-sfn", "/etc", link])
    try:
        for path in (link, f"{link}/pools"):
            r = kvmhub("pool", "create", "h3esc", "--type", "dir", "--path", path)
            assert r.code == 2 and "through a symlink to /etc" in r.err, (path, r.err)
    finally:
        host.run(["rm", "-f", link])
    assert "h3esc" not in pools(kvmhub)
    assert not host.inside("/etc/pools").exists()

    # a symlink planted in the pool's directory, pointing at a file outside it
    outside = "/var/lib/libvirt/h3-outside-secret"
    host.run(["sh", "-c", f"echo SECRET > {outside} && ln -s {outside} {POOL_DIR}/planted"])
    try:
        ok(kvmhub, "pool", "refresh", pool)
        dest = tmp_path / "stolen"
        for args in (("vol", "download", f"{pool}/planted", str(dest)), ("vol", "clone", f"{pool}/planted", "s.raw")):
            r = kvmhub(*args)
            assert r.code == 2 and "symlink pointing outside" in r.err, (args, r.err)
        assert not dest.exists()
        assert host.inside(outside).read_text() == "SECRET\n"
        assert "s.raw" not in volumes(kvmhub, pool)
    finally:
        host.run(["rm", "-f", f"{POOL_DIR}/planted", outside])
        kvmhub("pool", "refresh", pool)
    assert volumes(kvmhub, pool).keys() == before.keys()


def test_a_guest_written_qcow2_header_cannot_reach_host_files(
    prepared_host: TestHost, kvmhub: Runner, pool: str, tmp_path: Path
) -> None:
    """A raw disk whose guest wrote a qcow2 header naming a host file: after a refresh libvirt calls it a
    qcow2 backed by that file, and nothing may copy or stack on it."""
    host = prepared_host
    ok(kvmhub, "vol", "create", f"{pool}/guest.raw", "--size", "8M", "--format", "raw")
    header = tmp_path / "header.qcow2"  # -u: the backing file is only named, never opened
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/hostname",
                    str(header), "8M"], check=True)
    with open(host.inside(f"{POOL_DIR}/guest.raw"), "r+b") as fh:
        fh.write(header.read_bytes())
    try:
        ok(kvmhub, "pool", "refresh", pool)
        assert volumes(kvmhub, pool)["guest.raw"]["backing"] == "/etc/hostname"  # what libvirt now believes
        for args in (("vol", "clone", f"{pool}/guest.raw", "stolen.raw"),
                     ("vol", "clone", f"{pool}/guest.raw", "stolen.qcow2", "--linked"),
                     ("vol", "create", f"{pool}/stacked.qcow2", "--backing", f"{pool}/guest.raw")):
            r = kvmhub(*args)
            assert r.code == 2 and "backed by /etc/hostname" in r.err, (args, r.err)
        assert not {"stolen.raw", "stolen.qcow2", "stacked.qcow2"} & volumes(kvmhub, pool).keys()
        # one level further down: an overlay of it made behind kvmhub's back
        host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", f"{POOL_DIR}/guest.raw",
                  f"{POOL_DIR}/over.qcow2", "8M"])
        ok(kvmhub, "pool", "refresh", pool)
        r = kvmhub("vol", "clone", f"{pool}/over.qcow2", "stolen2.raw")
        assert r.code == 2 and f"through {pool}/guest.raw" in r.err and "/etc/hostname" in r.err, r.err
        assert "stolen2.raw" not in volumes(kvmhub, pool)
    finally:
        kvmhub("vol", "rm", f"{pool}/over.qcow2")
        kvmhub("vol", "rm", f"{pool}/guest.raw")


def test_pool_rm_keeps_a_directory_it_did_not_make(prepared_host: TestHost, kvmhub: Runner) -> None:
    host, name, path = prepared_host, "h3had", "/var/lib/libvirt/h3-had-dir"
    host.run(["mkdir", "-p", f"{path}/notes"])
    host.run(["sh", "-c", f"echo mine > {path}/notes/todo"])
    try:
        ok(kvmhub, "pool", "create", name, "--type", "dir", "--path", path)
        ok(kvmhub, "vol", "create", f"{name}/v.qcow2", "--size", "1M")
        r = kvmhub("pool", "rm", name, "--delete-data")
        assert r.code == 0 and f"directory {path} kept" in r.err, r.err
        assert name not in pools(kvmhub)
        assert host.inside(f"{path}/notes/todo").read_text() == "mine\n"
        assert not host.inside(f"{path}/v.qcow2").exists()
    finally:
        kvmhub("pool", "rm", name)
        host.run(["rm", "-rf", path])


def test_pool_rm_refused_while_a_vm_uses_a_volume(
    kvmhub: Runner, pool: str, tiny_image_file: Path
) -> None:
    vm = "h3-pool-user"
    if "boot.qcow2" not in volumes(kvmhub, pool):
        ok(kvmhub, "vol", "upload", f"{pool}/boot.qcow2", str(tiny_image_file))
    ok(kvmhub, "create", vm, "--vol", f"{pool}/boot.qcow2", "--memory", "192M", "--no-start")
    try:
        r = kvmhub("pool", "rm", pool)
        assert r.code == 4 and vm in r.err, r.err
        r = kvmhub("vol", "rm", f"{pool}/boot.qcow2")
        assert r.code == 4 and vm in r.err, r.err
        assert kvmhub("pool", "show", pool, "--json").json()["used_by"] == [vm]
        assert volumes(kvmhub, pool)["boot.qcow2"]["used_by"] == [vm]
        assert pools(kvmhub)[pool]["state"] == "active"
    finally:
        kvmhub("rm", vm)
    ok(kvmhub, "vol", "rm", f"{pool}/boot.qcow2")


@pytest.fixture
def small_pool(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """A dir pool on an 8 MiB tmpfs mounted inside the test host."""
    host = prepared_host
    host.run(["mkdir", "-p", SMALL_DIR])
    host.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", SMALL_DIR])
    try:
        ok(kvmhub, "pool", "create", SMALL, "--type", "dir", "--path", SMALL_DIR)
        yield SMALL
    finally:
        kvmhub("pool", "rm", SMALL)
        host.run(["umount", "-l", SMALL_DIR], check=False)
        host.run(["rmdir", SMALL_DIR], check=False)


def test_running_out_of_space_is_clear_and_leaves_nothing(
    prepared_host: TestHost, kvmhub: Runner, pool: str, small_pool: str, tiny_image_file: Path, tmp_path: Path
) -> None:
    if "tiny.qcow2" not in volumes(kvmhub, pool):
        ok(kvmhub, "vol", "upload", f"{pool}/tiny.qcow2", str(tiny_image_file))
    # checked before copying: the source's data does not fit
    r = kvmhub("vol", "clone", f"{pool}/tiny.qcow2", f"{small_pool}/tiny.qcow2")
    assert r.code == 5 and f"no space left in pool {small_pool} ({SMALL_DIR})" in r.err, r.err
    assert "needed ~" in r.err and "available" in r.err
    r = kvmhub("vol", "create", f"{small_pool}/big.raw", "--size", "16M", "--format", "raw", "--allocate")
    assert r.code == 5 and f"no space left in pool {small_pool}" in r.err, r.err
    big = tmp_path / "big.raw"
    big.write_bytes(os.urandom(12 * 1024**2))
    r = kvmhub("vol", "upload", f"{small_pool}/big.raw", str(big))
    assert r.code == 5 and f"no space left in pool {small_pool}" in r.err, r.err

    # found only while copying: a compressed qcow2 whose 16 MiB of data take little room until written out
    plain, packed = tmp_path / "aaa.raw", tmp_path / "aaa.qcow2"
    plain.write_bytes(b"A" * 16 * 1024**2)
    subprocess.run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(plain), str(packed)], check=True)
    ok(kvmhub, "vol", "upload", f"{pool}/packed.qcow2", str(packed))
    r = kvmhub("vol", "clone", f"{pool}/packed.qcow2", f"{small_pool}/unpacked.qcow2")
    assert r.code == 5 and f"no space left in pool {small_pool}" in r.err, r.err

    assert volumes(kvmhub, small_pool) == {}
    assert list(prepared_host.inside(SMALL_DIR).iterdir()) == []  # no half-made file either


def _host_lacks(host: TestHost, spec: PoolSpec) -> str | None:
    """Why kvmhub refuses this pool type on this host (the very check `pool create` runs), or None."""
    with Hypervisor(host.uri) as hv:  # nothing is asked of libvirt: the facts are the local kernel's
        try:
            storage.check_host_support(hv, spec)
        except KvmhubError as exc:
            return exc.message
    return None


def test_netfs_pool(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    spec = PoolSpec(name="h3nfs", type="netfs", host="127.0.0.1", export="/export", path="/var/lib/libvirt/h3nfs")
    if (why := _host_lacks(prepared_host, spec)) is not None:
        r = kvmhub("pool", "create", "h3nfs", "--type", "netfs", "--host", "127.0.0.1", "--export", "/export",
                   "--path", "/var/lib/libvirt/h3nfs")
        assert r.code == 5 and "cannot create netfs pool" in r.err, r.err
        assert "h3nfs" not in pools(kvmhub)
        pytest.skip(f"a netfs pool cannot mount here: {why}")
    _netfs_round_trip(prepared_host, kvmhub, tmp_path)


def _netfs_round_trip(host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    """A netfs pool on an export of nfs-ganesha (NFSv3, its own rpcbind, private /run) inside the test host."""
    export = tmp_path / "export"
    export.mkdir(mode=0o777)
    conf = tmp_path / "ganesha.conf"
    conf.write_text(
        "NFS_CORE_PARAM { Protocols = 3; Enable_NLM = false; Enable_RQUOTA = false; }\n"
        f"EXPORT {{ Export_Id = 1; Path = {export}; Pseudo = /export; Protocols = 3; Transports = TCP;"
        " Access_Type = RW; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }\n")
    launcher = ("import subprocess,sys,time\n"
                "subprocess.run(['mount','-t','tmpfs','h3-nfs-run','/run'],check=True)\n"
                "subprocess.Popen(['rpcbind','-w','-f']); time.sleep(1)\n"
                "sys.exit(subprocess.call(['ganesha.nfsd','-F','-f',sys.argv[1],'-L',sys.argv[2]]))\n")
    server = host.popen(["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
                         sys.executable, "-c", launcher, str(conf), str(tmp_path / "ganesha.log")])
    try:
        ok(kvmhub, "pool", "create", "h3nfs", "--type", "netfs", "--host", "127.0.0.1", "--export", str(export),
           "--path", "/var/lib/libvirt/h3nfs", "--nfs-version", "3")
        ok(kvmhub, "vol", "create", "h3nfs/a.qcow2", "--size", "8M")
        assert (export / "a.qcow2").exists()
        ok(kvmhub, "pool", "rm", "h3nfs", "--delete-data")
    finally:
        kvmhub("pool", "rm", "h3nfs")
        server.terminate()
        server.wait(timeout=30)


def test_logical_pool(prepared_host: TestHost, kvmhub: Runner, tmp_path: Path) -> None:
    if (why := _host_lacks(prepared_host, PoolSpec(name="h3lvm", type="logical", vg="h3vg"))) is not None:
        r = kvmhub("pool", "create", "h3lvm", "--type", "logical", "--vg", "h3vg")
        assert r.code == 5 and "cannot create logical pool" in r.err, r.err
        assert "h3lvm" not in pools(kvmhub)
        pytest.skip(f"LVM cannot run here: {why}")
    backing = tmp_path / "pv.img"
    with open(backing, "wb") as fh:
        fh.truncate(64 * 1024**2)
    loop = prepared_host.run(["losetup", "--find", "--show", str(backing)]).stdout.strip()
    try:
        ok(kvmhub, "pool", "create", "h3lvm", "--type", "logical", "--vg", "h3vg", "--device", loop)
        ok(kvmhub, "vol", "create", "h3lvm/lv1", "--size", "8M", "--format", "raw")
        assert "lv1" in volumes(kvmhub, "h3lvm")
        ok(kvmhub, "pool", "rm", "h3lvm", "--delete-data")
    finally:
        kvmhub("pool", "rm", "h3lvm", "--delete-data")
        prepared_host.run(["losetup", "-d", loop], check=False)
