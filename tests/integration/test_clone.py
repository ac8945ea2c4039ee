"""`kvmhub clone` on a private test host, checked from inside real tiny guests and on the host's files.

The module's tests run in order and share their VMs (boots are the expensive part): the source boots once
(together with an encrypted VM, see test_encryption.py for the rest of encryption) and writes a file; a
linked clone then freezes its disk into a base, and the clone and the source boot side by side, each
writing without the other (nor the image, nor the base) seeing it. Then full clones, a compressed export,
removal order, and a full clone on a full disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from lxml import etree

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.models import KvmhubMeta
from kvmhub.services.storage import images
from kvmhub.testing import TestHost
from kvmhub.xml import snapshot as xml_snap
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_from_xml, domain_to_xml
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.guest import guest_sh

SRC, DST, FULL, ENC, COPY = "cl-src", "cl-dst", "cl-full", "cl-enc", "cl-imported"
IMAGES = "/var/lib/libvirt/kvmhub-images"
DISKS = "/var/lib/libvirt/images"
GUEST_TEXT = "KVMHUB-PLAINTEXT-7f3a9c"
WAIT = ("--wait", "--timeout", "240")


def _ok(kvmhub: Runner, *args: str) -> Result:
    r = kvmhub(*args, timeout=400)
    assert r.code == 0, f"kvmhub {' '.join(args)} exited {r.code}: {r.err}"
    return r


def _both(kvmhub: Runner, *commands: tuple[str, ...]) -> None:
    """Run CLI commands at the same time (guests boot in parallel); each must succeed."""
    with ThreadPoolExecutor(len(commands)) as pool:
        for r, cmd in zip(pool.map(lambda c: kvmhub(*c, timeout=400), commands), commands, strict=True):
            assert r.code == 0, f"kvmhub {' '.join(cmd)} exited {r.code}: {r.err}"


def _in_guest(host: TestHost, vm: str, script: str) -> str:
    return guest_sh(host, vm, script).strip()


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _volumes(host: TestHost) -> set[str]:
    return {line.split()[0] for line in host.virsh("vol-list", "default").stdout.splitlines() if line.strip()}


def _backing(host: TestHost, volume: str) -> str | None:
    xml = host.virsh("vol-dumpxml", volume, "--pool", "default").stdout
    return xml_volume.volume_from_xml(xml).backing_path


def _shown(kvmhub: Runner, vm: str) -> dict[str, Any]:
    data: dict[str, Any] = _ok(kvmhub, "show", vm, "--json").json()
    return data


@pytest.fixture(scope="module")
def lab(prepared_host: TestHost, kvmhub: Runner) -> Iterator[dict[str, str]]:
    """Shared facts of the module's tests; every VM they make is removed at the end."""
    facts: dict[str, str] = {"image_sha": _sha256(prepared_host.inside(f"{IMAGES}/tiny.qcow2"))}
    try:
        yield facts
    finally:
        for vm in (DST, FULL, COPY, ENC, SRC, "cl-never", "cl-never-2"):
            kvmhub("rm", vm)


def test_linked_clone_of_a_never_started_vm_sits_on_the_image(prepared_host: TestHost, kvmhub: Runner,
                                                               lab: dict[str, str]) -> None:
    host = prepared_host
    _ok(kvmhub, "create", "cl-never", "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--no-start")
    before = _volumes(host)
    r = _ok(kvmhub, "clone", "cl-never", "cl-never-2", "--linked")
    assert "linked clone" in r.err
    made = _volumes(host) - before
    assert made == {"cl-never-2-disk0.qcow2", "cl-never-2-seed.iso"}  # no base: nothing was frozen
    assert _backing(host, "cl-never-2-disk0.qcow2") == f"{IMAGES}/tiny.qcow2"
    assert _backing(host, "cl-never-disk0.qcow2") == f"{IMAGES}/tiny.qcow2"
    again = kvmhub("clone", "cl-never", "cl-never-2", "--linked")
    assert again.code == 4 and "already exists" in again.err
    _ok(kvmhub, "rm", "cl-never-2")
    _ok(kvmhub, "rm", "cl-never")
    assert _volumes(host) == before - {"cl-never-disk0.qcow2", "cl-never-seed.iso"}


def test_source_and_encrypted_vm_boot(prepared_host: TestHost, kvmhub: Runner, lab: dict[str, str]) -> None:
    host = prepared_host
    _ok(kvmhub, "create", SRC, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--no-start")
    _both(kvmhub, ("start", SRC, *WAIT),
          ("create", ENC, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--encrypt", *WAIT))
    _in_guest(host, SRC, "echo from-src > /mnt/disk/origin && sync")
    r = kvmhub("clone", SRC, DST)
    assert r.code == 4 and "running" in r.err and "kvmhub stop" in r.err  # refused while it runs
    assert DST not in {v["name"] for v in _ok(kvmhub, "ls", "--json").json()}

    # the encrypted VM: LUKS in the qcow2 header, and what the guest writes is not on the host in clear
    _in_guest(host, ENC, f"echo {GUEST_TEXT} > /mnt/disk/secret.txt && sync")
    assert _in_guest(host, ENC, "cat /mnt/disk/secret.txt") == GUEST_TEXT
    disk = host.inside(f"{DISKS}/{ENC}-disk0.qcow2")
    info = json.loads(host.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2",
                                f"{DISKS}/{ENC}-disk0.qcow2"]).stdout)
    assert info["encrypted"] is True
    assert info["format-specific"]["data"]["encrypt"]["format"] == "luks"
    assert GUEST_TEXT.encode() not in disk.read_bytes()
    shown = _shown(kvmhub, ENC)
    assert shown["disks"][0]["encryption_secret"]
    assert "encrypted" in _ok(kvmhub, "show", ENC).out


def test_linked_clone_freezes_the_written_source_and_both_boot(prepared_host: TestHost, kvmhub: Runner,
                                                                 lab: dict[str, str]) -> None:
    host = prepared_host
    _ok(kvmhub, "stop", SRC, "--force", "--timeout", "60")
    r = _ok(kvmhub, "clone", SRC, DST, "--linked")
    base = next(w for w in r.err.replace(",", " ").split() if w.startswith("default/base-"))
    base_name = base.removeprefix("default/").rstrip(");")
    lab["base"] = base_name
    assert _backing(host, f"{SRC}-disk0.qcow2") == f"{DISKS}/{base_name}"  # the source's new overlay
    assert _backing(host, f"{DST}-disk0.qcow2") == f"{DISKS}/{base_name}"
    assert _backing(host, base_name) == f"{IMAGES}/tiny.qcow2"
    base_sha = _sha256(host.inside(f"{DISKS}/{base_name}"))

    _both(kvmhub, ("start", DST, *WAIT), ("start", SRC, *WAIT))
    assert _in_guest(host, DST, "hostname") == DST
    assert _in_guest(host, SRC, "hostname") == SRC
    assert _in_guest(host, DST, "cat /mnt/disk/origin") == "from-src"  # the source's data, through the base
    _in_guest(host, DST, "echo from-dst > /mnt/disk/dst-only && sync")
    _in_guest(host, SRC, "echo from-src-2 > /mnt/disk/src-only && sync")
    assert _in_guest(host, SRC, "cat /mnt/disk/dst-only 2>/dev/null || echo absent") == "absent"
    assert _in_guest(host, DST, "cat /mnt/disk/src-only 2>/dev/null || echo absent") == "absent"
    assert _sha256(host.inside(f"{IMAGES}/tiny.qcow2")) == lab["image_sha"]
    assert _sha256(host.inside(f"{DISKS}/{base_name}")) == base_sha

    src, dst = _shown(kvmhub, SRC), _shown(kvmhub, DST)
    assert src["uuid"] != dst["uuid"]
    assert src["nics"][0]["mac"] != dst["nics"][0]["mac"]
    assert dst["ips"] and set(src["ips"]).isdisjoint(dst["ips"])
    assert dst["serial_log"].endswith(f"{DST}-serial.log")


def test_full_clone_is_independent_and_exports_compressed(prepared_host: TestHost, kvmhub: Runner,
                                                          lab: dict[str, str], tmp_path: Path) -> None:
    host = prepared_host
    _ok(kvmhub, "stop", SRC, "--force", "--timeout", "60")
    _ok(kvmhub, "clone", SRC, FULL)
    assert _backing(host, f"{FULL}-disk0.qcow2") is None  # self-contained: no image, no base under it
    assert _shown(kvmhub, FULL)["disks"][0]["source"]["volume"] == f"{FULL}-disk0.qcow2"

    archive = tmp_path / "full.tar.gz"
    _ok(kvmhub, "export", FULL, "--to", str(archive), "--compress")
    with tarfile.open(archive) as tar:
        member = tar.extractfile("disk-vda.qcow2")
        assert member is not None
        (tmp_path / "vda.qcow2").write_bytes(member.read())
    check = host.run(["qemu-img", "check", "-f", "qcow2", str(tmp_path / "vda.qcow2")], check=False)
    assert "compressed clusters" in check.stdout and " 0.00% compressed" not in check.stdout, check.stdout
    _ok(kvmhub, "import", str(archive), "--as", COPY)
    assert COPY in {v["name"] for v in _ok(kvmhub, "ls", "--json").json()}


def test_removing_source_then_clone_leaves_no_base(prepared_host: TestHost, kvmhub: Runner,
                                                   lab: dict[str, str]) -> None:
    host = prepared_host
    base = lab["base"]
    _ok(kvmhub, "rm", SRC)
    assert base in _volumes(host)  # the clone still sits on it
    assert _backing(host, f"{DST}-disk0.qcow2") == f"{DISKS}/{base}"
    assert {d["source"]["volume"] for d in _shown(kvmhub, FULL)["disks"]} == {f"{FULL}-disk0.qcow2",
                                                                              f"{FULL}-seed.iso"}
    assert {f"{FULL}-disk0.qcow2", f"{FULL}-seed.iso"} <= _volumes(host)
    _ok(kvmhub, "start", FULL)  # QEMU opens every disk: none of them went with the source
    _ok(kvmhub, "kill", FULL)
    r = _ok(kvmhub, "rm", DST)
    assert base in r.err
    left = _volumes(host)
    assert base not in left
    assert not {v for v in left if v.startswith(("base-", f"{SRC}-", f"{DST}-"))}
    assert _sha256(host.inside(f"{IMAGES}/tiny.qcow2")) == lab["image_sha"]
    secret = _shown(kvmhub, ENC)["disks"][0]["encryption_secret"]
    _ok(kvmhub, "rm", ENC)
    assert secret not in host.virsh("secret-list").stdout


def _tiny_iso(path: Path) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="CLONEME")
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.;1")
    iso.write(str(path))
    iso.close()
    return path


def _define_user(host: TestHost, vm: str, of: str, volume: str) -> None:
    """Define VM `vm` owning nothing, with disk `volume` and the direct-boot kernel of VM `of`."""
    with Hypervisor(host.uri) as hv:
        spec = domain_from_xml(hv_domains.lookup(hv, of).xml(inactive=True))
        disk = next(d for d in spec.disks if d.source.volume == volume)
        user = spec.model_copy(update={"name": vm, "uuid": None, "nics": [], "disks": [disk], "serial": None,
                                       "graphics": None, "meta": KvmhubMeta(),
                                       "boot": spec.boot.model_copy(update={"initrd": None})})
        hv_domains.define(hv, domain_to_xml(user))


def test_clone_copies_the_media_and_kernel_the_source_owns(prepared_host: TestHost, kvmhub: Runner,
                                                           tmp_path: Path) -> None:
    host = prepared_host
    kernel, initrd = tmp_path / "kernel", tmp_path / "initrd"
    kernel.write_bytes(b"K" * 4096)
    initrd.write_bytes(b"I" * 4096)
    vms = ("cl-iso", "cl-iso-2", "cl-kern", "cl-kern-2", "cl-user")
    try:
        _ok(kvmhub, "create", "cl-iso", "--iso", str(_tiny_iso(tmp_path / "media.iso")), "--disk", "64M",
            "--memory", "192M", "--no-start")
        r = kvmhub("clone", "cl-iso", "cl-iso-2")
        assert r.code == 4 and "has not been installed yet" in r.err and "kvmhub start cl-iso" in r.err, r.err
        _ok(kvmhub, "start", "cl-iso")  # the installer boot's first start (the CD-ROM holds nothing bootable)
        _ok(kvmhub, "kill", "cl-iso")
        _ok(kvmhub, "clone", "cl-iso", "cl-iso-2")
        cdrom = next(d for d in _shown(kvmhub, "cl-iso-2")["disks"] if d["device"] == "cdrom")
        assert cdrom["source"]["volume"] == "cl-iso-2-install.iso"

        _ok(kvmhub, "create", "cl-kern", "--kernel", str(kernel), "--initrd", str(initrd), "--disk", "64M",
            "--memory", "192M", "--no-start")
        _ok(kvmhub, "clone", "cl-kern", "cl-kern-2")
        boot = etree.fromstring(host.virsh("dumpxml", "cl-kern-2", "--inactive").stdout.encode())
        assert boot.findtext("os/kernel") == f"{DISKS}/cl-kern-2-kernel"
        assert boot.findtext("os/initrd") == f"{DISKS}/cl-kern-2-initrd"
        assert host.inside(f"{DISKS}/cl-kern-2-kernel").read_bytes() == kernel.read_bytes()

        # removing a source leaves its clone whole, and keeps what another VM still uses
        _define_user(host, "cl-user", "cl-kern", "cl-kern-disk0.qcow2")
        _ok(kvmhub, "rm", "cl-iso")
        r = _ok(kvmhub, "rm", "cl-kern")
        assert "kept default/cl-kern-disk0.qcow2: VM cl-user still uses it" in r.err, r.err
        assert "kept default/cl-kern-kernel: VM cl-user still uses it" in r.err
        left = _volumes(host)
        assert {"cl-kern-disk0.qcow2", "cl-kern-kernel"} <= left and "cl-kern-initrd" not in left
        assert {"cl-iso-2-install.iso", "cl-kern-2-kernel", "cl-kern-2-initrd", "cl-kern-2-disk0.qcow2"} <= left
        assert "cl-iso-install.iso" not in left
    finally:
        for vm in vms:
            kvmhub("rm", vm)
        for vol in ("cl-kern-disk0.qcow2", "cl-kern-kernel"):
            host.virsh("vol-delete", vol, "--pool", "default", check=False)
    assert not {v for v in _volumes(host) if v.startswith(("cl-iso", "cl-kern"))}


def test_full_clone_on_a_full_disk_fails_cleanly(prepared_host: TestHost, kvmhub: Runner) -> None:
    host, vm, pool_dir = prepared_host, "cl-small", "/var/lib/libvirt/clone-small"
    host.run(["mkdir", "-p", pool_dir])
    host.run(["mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", pool_dir])
    try:
        host.virsh("pool-define-as", "clsmall", "dir", "--target", pool_dir)
        host.virsh("pool-start", "clsmall")
        _ok(kvmhub, "create", vm, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--no-start")
        with Hypervisor(host.uri) as hv:
            image = images.get(hv, "tiny")
            hv_storage.lookup_pool(hv, "clsmall").create_volume(
                xml_volume.volume_xml(f"{vm}-vda.qcow2", image.info().capacity, "qcow2", image.path, "qcow2"),
                what="cloning tiny into the small pool")
            dom = hv_domains.lookup(hv, vm)
            hv_domains.define(hv, xml_snap.retarget_domain_disks(dom.xml(inactive=True),
                                                                 {"vda": f"{pool_dir}/{vm}-vda.qcow2"}))
        host.run(["dd", "if=/dev/zero", f"of={pool_dir}/filler", "bs=1M", "count=20"], check=False)
        files = sorted(p.name for p in host.inside(pool_dir).iterdir())
        leases = host.virsh("net-dumpxml", LAB_NET).stdout

        r = kvmhub("clone", vm, "cl-small-2", timeout=300)
        assert r.code != 0
        assert "no space left" in r.err.lower() and "fix:" in r.err, r.err
        assert sorted(p.name for p in host.inside(pool_dir).iterdir()) == files  # no half-made copy
        assert "cl-small-2" not in {v["name"] for v in _ok(kvmhub, "ls", "--json").json()}
        assert host.virsh("net-dumpxml", LAB_NET).stdout == leases
        assert not {v for v in _volumes(host) if v.startswith("cl-small-2")}
    finally:
        kvmhub("rm", vm)
        host.virsh("pool-destroy", "clsmall", check=False)
        host.virsh("pool-undefine", "clsmall", check=False)
        host.run(["umount", "-l", pool_dir], check=False)
        host.run(["rmdir", pool_dir], check=False)
