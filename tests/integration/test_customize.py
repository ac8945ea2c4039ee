"""`kvmhub image customize` on a private test host: edits read back with libguestfs, a VM booted from the
customized tiny image shows them, and a failing `--run` leaves the image byte-identical.

Two images: a copy of the tiny appliance (its userland is an initramfs: edits go to its disk's overlay, applied
at boot), and "mini", an ext4 disk with busybox as /bin/sh and no recognisable OS (the root is found by its
/etc), where commands run and --sysprep has a machine-id and host keys to reset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_sh

guestfs = pytest.importorskip("guestfs", reason="libguestfs's Python bindings are missing: run scripts/setup.sh "
                                                "(python3-guestfs, linked into the virtualenv)")
MINI_ID = b"0123456789abcdef0123456789abcdef\n"


def _guestfs(path: Path, *, readonly: bool) -> Any:
    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend_settings(["force_tcg"])  # these tests run where KVM may abort libguestfs's QEMU
    g.add_drive_opts(str(path), format="qcow2", readonly=readonly)
    g.launch()
    return g


@pytest.fixture(scope="module")
def mini_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini image, made with libguestfs; the test module is skipped when libguestfs cannot launch here."""
    path = tmp_path_factory.mktemp("mini") / "mini.qcow2"
    g = guestfs.GuestFS(python_return_dict=True)
    g.disk_create(str(path), "qcow2", 64 << 20)
    try:
        g = _guestfs(path, readonly=False)
    except RuntimeError as exc:
        pytest.skip(f"libguestfs cannot launch its appliance here (see libguestfs-test-tool): {exc}")
    g.mkfs("ext4", "/dev/sda")
    g.mount("/dev/sda", "/")
    for d in ("/bin", "/etc/ssh", "/root", "/var/log"):
        g.mkdir_p(d)
    g.upload("/bin/busybox", "/bin/busybox")
    g.chmod(0o755, "/bin/busybox")
    g.ln_s("busybox", "/bin/sh")
    g.write("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    g.write("/etc/shadow", b"root:*:19000:0:99999:7:::\n")
    g.write("/etc/machine-id", MINI_ID)
    g.write("/etc/ssh/ssh_host_ed25519_key", b"a host key\n")
    g.write("/root/.ash_history", b"secret command\n")
    g.shutdown()
    g.close()
    return path


def _image_path(host: TestHost, kvmhub: Runner, name: str) -> Path:
    shown = kvmhub("image", "show", name, "--json")
    assert shown.code == 0, shown.err
    return host.host_root / str(shown.json()["path"]).lstrip("/")


def _read_back(host: TestHost, kvmhub: Runner, name: str, tmp: Path) -> Any:
    """libguestfs on a copy of image ``name``: it resolves the test host's /proc/PID/root paths to /."""
    copy = tmp / f"{name}.qcow2"
    shutil.copyfile(_image_path(host, kvmhub, name), copy)
    return _guestfs(copy, readonly=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(prepared_host: TestHost, kvmhub: Runner, mini_file: Path, tiny_image_file: Path) -> Iterator[None]:
    for name, src in (("gold", tiny_image_file), ("mini", mini_file)):
        r = kvmhub("image", "import", str(src), "--name", name)
        assert r.code == 0, r.err
    yield
    for name in ("gold", "mini"):
        kvmhub("image", "rm", name)


def test_a_failing_run_leaves_the_image_byte_identical(prepared_host: TestHost, kvmhub: Runner,
                                                         images: None) -> None:
    path = _image_path(prepared_host, kvmhub, "mini")
    before = _sha256(path)
    r = kvmhub("image", "customize", "mini", "--write", "/etc/motd:changed", "--run", "echo broken >&2; exit 3")
    assert r.code == 1, r.out + r.err
    assert "'echo broken >&2; exit 3' failed inside image mini; nothing was changed" in r.err
    assert _sha256(path) == before
    ops = [o for o in kvmhub("ops", "ls", "--json").json() if (o["kind"], o["target"]) == ("image.customize", "mini")]
    last = kvmhub("ops", "show", max(ops, key=lambda o: o["started"])["id"], "--json").json()
    overlay = last["steps"][0]
    assert last["state"] == "failed" and overlay["state"] == "undone", last
    assert not os.path.exists(overlay["description"].removeprefix("remove the overlay "))


def test_run_password_and_sysprep_reach_an_image_without_a_known_os(prepared_host: TestHost, kvmhub: Runner,
                                                                     images: None, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("n0t-in-argv\n")
    r = kvmhub("image", "customize", "mini", "--sysprep", "--run", "echo ran > /etc/ran",
               "--password-file", f"root:{secret}", "--json")
    assert r.code == 0, r.err
    result = r.json()
    assert "the file system with /etc" in result["found"]
    assert "password of root set" in result["changes"] and "n0t-in-argv" not in r.out + r.err
    print(f"image customize: {result['seconds']} s, libguestfs appliance start {result['launch_seconds']} s")
    g = _read_back(prepared_host, kvmhub, "mini", tmp_path)
    try:
        g.mount_ro("/dev/sda", "/")
        assert g.read_file("/etc/ran") == b"ran\n"
        assert g.read_file("/etc/machine-id") == b""
        assert not g.exists("/etc/ssh/ssh_host_ed25519_key") and not g.exists("/root/.ash_history")
        shadow = g.read_file("/etc/shadow").decode()
        assert shadow.startswith("root:$6$") and "n0t-in-argv" not in shadow
    finally:
        g.close()


def test_customized_tiny_image_boots_with_its_hostname_file_and_key(prepared_host: TestHost, kvmhub: Runner,
                                                                     images: None, tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvmhubCustomizeTestKey test@kvmhub\n")
    r = kvmhub("image", "customize", "gold", "--hostname", "goldie", "--write", "/etc/motd:made offline\n",
               "--ssh-key", f"root:{key}", "--sysprep")
    assert r.code == 0, r.err
    assert "hostname set to goldie" in r.err and f"SSH key {key} added for root" in r.err
    g = _read_back(prepared_host, kvmhub, "gold", tmp_path)
    try:
        g.mount_ro("/dev/sda", "/")
        assert g.read_file("/overlay/etc/hostname") == b"goldie\n"
        assert g.read_file("/overlay/etc/motd") == b"made offline\n"
        assert b"KvmhubCustomizeTestKey" in g.read_file("/overlay/root/.ssh/authorized_keys")
    finally:
        g.close()

    vm = "vm-customized"
    r = kvmhub("create", vm, "--image", "gold", "--network", LAB_NET, "--memory", "256M", "--wait",
               "--timeout", "240")
    assert r.code == 0, r.err
    try:
        out = guest_sh(prepared_host, vm, "hostname; cat /etc/motd; cat /root/.ssh/authorized_keys; "
                                          "stat -c %a /root/.ssh/authorized_keys")
        lines = out.splitlines()
        assert lines[0] == "goldie" and lines[1] == "made offline" and lines[-1] == "600"
        assert "KvmhubCustomizeTestKey" in out
        refused = kvmhub("image", "customize", "gold", "--hostname", "other")
        assert refused.code == 4 and f"image 'gold' is the base of VM {vm}" in refused.err
        running = kvmhub("disk", "edit", vm, "--write", "/etc/issue:edited")
        assert running.code == 4 and f"`kvmhub stop {vm}`" in running.err
        assert kvmhub("stop", vm).code == 0
        edited = kvmhub("disk", "edit", vm, "--write", "/etc/issue:edited", "--json")
        assert edited.code == 0, edited.err
        assert (edited.json()["target"], edited.json()["changes"]) == (f"vda of {vm}", ["/etc/issue written (6 bytes)"])
    finally:
        kvmhub("rm", vm)
