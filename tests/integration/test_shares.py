"""Shared folders on one tiny guest: made with `create --share` (mounted at first boot), another share added live
and mounted, files crossing both ways, read-only refused for virtiofs, and `share rm` unmounting and unplugging it;
9p shares (read-write and read-only) on a second tiny guest running Debian's generic kernel.
(A share added to a VM whose memory is not shared yet asks for a restart: tests/unit/test_shares.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from kvmhub.tools.tiny.build import build_tiny_image
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.guest import guest_run, guest_sh


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An allowed root with two directories in it, and the environment naming the settings file that allows it."""
    root = tmp_path_factory.mktemp("shares")
    for name in ("first", "data"):
        (root / name).mkdir()
    conf = root / "kvmhub.toml"
    conf.write_text(f'[shares]\nroots = ["{root}"]\n')
    return root, {"KVMHUB_CONFIG": str(conf)}


@pytest.fixture(scope="module")
def shared_vm(prepared_host: TestHost, kvmhub: Runner, roots: tuple[Path, dict[str, str]]) -> Iterator[str]:
    """A tiny VM made with ``first`` shared (a file already in it), up to ready; removed after the module."""
    root, env = roots
    (root / "first" / "seeded.txt").write_text("there before the VM\n")
    name = "vm-shares"
    _ok(kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--wait", "--timeout",
               "240", "--share", f"{root / 'first'}:first", env=env))
    try:
        yield name
    finally:
        kvmhub("rm", name)


def _ok(r: Result) -> Result:
    assert r.code == 0, r.err + r.out
    return r


def test_a_virtiofs_share_crosses_both_ways_and_goes(prepared_host: TestHost, kvmhub: Runner, shared_vm: str,
                                                     roots: tuple[Path, dict[str, str]]) -> None:
    root, env = roots
    vm = shared_vm
    # made with the VM: mounted by the seed at first boot
    seen = guest_sh(prepared_host, vm, "i=0; while [ $i -lt 30 ] && ! [ -e /mnt/first/seeded.txt ]; do sleep 1; "
                                       "i=$((i + 1)); done; cat /mnt/first/seeded.txt")  # runcmd may still run
    assert seen == "there before the VM\n"
    listed = json.loads(_ok(kvmhub("share", "ls", vm, "--json")).out)
    assert [(s["tag"], s["mode"], s["attached"]) for s in listed] == [("first", "virtiofs", True)]

    # its memory is shared: the next share is plugged in live and mounted by kvmhub
    said = _ok(kvmhub("share", "add", vm, str(root / "data"), "--tag", "data", env=env)).err
    assert "(applied live)" in said and f"{vm}: mounted in the guest at /mnt/data" in said
    (root / "data" / "from-host.txt").write_text("written on the host\n")
    assert guest_sh(prepared_host, vm, "cat /mnt/data/from-host.txt") == "written on the host\n"
    guest_sh(prepared_host, vm, "echo written in the guest > /mnt/data/from-guest.txt && sync")
    assert (root / "data" / "from-guest.txt").read_text() == "written in the guest\n"

    # read-only virtiofs is refused with the reason, and nothing changed
    r = kvmhub("share", "add", vm, str(root / "data"), "--tag", "ro", "--readonly", env=env)
    assert r.code == 2 and "a virtiofs share cannot be read-only" in r.err and "no read-only mode" in r.err
    assert len(json.loads(_ok(kvmhub("share", "ls", vm, "--json")).out)) == 2
    # outside the allowed roots: refused, naming the setting to change
    r = kvmhub("share", "add", vm, "/tmp", env=env)
    assert r.code == 2 and "outside the roots allowed for shares" in r.err and "shares.roots in" in r.err

    said = _ok(kvmhub("share", "rm", vm, "data")).err
    assert f"{vm}: share data" in said and "removed (applied live)" in said
    assert "/mnt/data" not in guest_sh(prepared_host, vm, "cat /proc/mounts")
    assert [s["tag"] for s in json.loads(_ok(kvmhub("share", "ls", vm, "--json")).out)] == ["first"]
    assert (root / "data" / "from-guest.txt").is_file()  # the host directory itself is left alone


@pytest.fixture(scope="module")
def nine_vm(prepared_host: TestHost, kvmhub: Runner, roots: tuple[Path, dict[str, str]]) -> Iterator[str]:
    """A tiny VM on Debian's generic kernel (the cloud kernel has no 9p), defined with a writable and a
    read-only 9p share, then started; removed after the module."""
    root, env = roots
    for name in ("nine", "ro"):
        (root / name).mkdir()
    (root / "ro" / "kept.txt").write_text("kept\n")
    image = build_tiny_image(kernel="generic")
    _ok(kvmhub("image", "import", str(image), "--name", "tiny-generic"))
    vm = "vm-nine"
    _ok(kvmhub("create", vm, "--image", "tiny-generic", "--network", LAB_NET, "--memory", "256M", "--no-start"))
    try:
        said = _ok(kvmhub("share", "add", vm, str(root / "nine"), "--tag", "nine", "--mode", "9p", env=env)).err
        assert f"{vm}: share nine" in said
        _ok(kvmhub("share", "add", vm, str(root / "ro"), "--tag", "ro", "--mode", "9p", "--readonly", env=env))
        _ok(kvmhub("start", vm, "--wait", "--timeout", "240"))
        yield vm
    finally:
        kvmhub("rm", vm)
        kvmhub("image", "rm", "tiny-generic")


def test_9p_shares_cross_both_ways_and_read_only_is_enforced(prepared_host: TestHost, kvmhub: Runner,
                                                              nine_vm: str, roots: tuple[Path, dict[str, str]]
                                                              ) -> None:
    root, _env = roots
    vm = nine_vm
    listed = json.loads(_ok(kvmhub("share", "ls", vm, "--json")).out)
    assert sorted((s["tag"], s["mode"], s["readonly"]) for s in listed) == [("nine", "9p", False), ("ro", "9p", True)]
    guest_sh(prepared_host, vm, "mkdir -p /mnt/nine /mnt/ro && mount -t 9p -o trans=virtio,version=9p2000.L nine "
                                "/mnt/nine && mount -t 9p -o trans=virtio,version=9p2000.L ro /mnt/ro")
    guest_sh(prepared_host, vm, "echo written in the guest > /mnt/nine/from-guest.txt && sync")
    assert (root / "nine" / "from-guest.txt").read_text() == "written in the guest\n"
    (root / "nine" / "from-host.txt").write_text("written on the host\n")
    assert guest_sh(prepared_host, vm, "cat /mnt/nine/from-host.txt") == "written on the host\n"
    assert guest_sh(prepared_host, vm, "cat /mnt/ro/kept.txt") == "kept\n"
    refused = guest_run(prepared_host, vm, ["sh", "-c", "echo x > /mnt/ro/new.txt"])
    assert refused.code != 0
    assert not (root / "ro" / "new.txt").exists()
