"""kill -9 (and SIGTERM) at every fault point: the next kvmhub command puts the host back as it was."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import Conflict, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.services.storage import image_records, images
from kvmhub.services.storage.default_pools import DISKS_POOL, IMAGES_POOL
from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.crash import differences, host_state, kill_at

CREATE_STEPS = ["clone-disk", "build-seed", "reserve-address", "define", "start"]


def _recovered(kvmhub: Runner) -> str:
    """Run an ordinary command; it takes over the dead operation first. Returns what it said."""
    r = kvmhub("ls")
    assert r.code == 0, r.err
    return r.err


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", CREATE_STEPS)
def test_kill9_during_create_is_undone_by_the_next_command(step: str, attempt: int, prepared_host: TestHost,
                                                           kvmhub: Runner) -> None:
    before = host_state(prepared_host)
    code, _ = kill_at(prepared_host, ["create", f"k9-{attempt}", "--image", "tiny", "--network", LAB_NET,
                                      "--memory", "128M"], step)
    assert code == -signal.SIGKILL
    assert host_state(prepared_host) != before  # the kill left something for recovery to take back
    said = _recovered(kvmhub)
    assert "recovered interrupted operation" in said and "rolled-back" in said, said
    assert host_state(prepared_host) == before
    ops = kvmhub("ops", "ls", "--json").json()
    assert ops[0]["kind"] == "vm.create" and ops[0]["state"] == "rolled-back"
    assert kvmhub("repair").out.strip() == "nothing to repair"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_undo_like_ctrl_c(sig: int, prepared_host: TestHost, kvmhub: Runner) -> None:
    before = host_state(prepared_host)
    code, err = kill_at(prepared_host, ["create", "term", "--image", "tiny", "--network", LAB_NET,
                                        "--memory", "128M", "--no-start"], "define", sig=sig)
    assert code == 130, err
    assert "undo: undefine VM term" in err
    assert host_state(prepared_host) == before
    assert kvmhub("ops", "ls", "--json").json()[0]["state"] == "cancelled"


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["import-record", "import-store", "import-done"])
def test_kill9_during_image_import_leaves_no_usable_image(step: str, attempt: int, prepared_host: TestHost,
                                                          kvmhub: Runner, tiny_image_file: Path) -> None:
    name = f"k9img-{attempt}"
    before = host_state(prepared_host)
    code, _ = kill_at(prepared_host, ["image", "import", str(tiny_image_file), "--name", name], step)
    assert code == -signal.SIGKILL
    if step != "import-done":  # before its record says complete, nothing may use the image
        with Hypervisor(prepared_host.uri) as hv, pytest.raises((Conflict, NotFound)) as refused:
            images.get(hv, name)
        assert isinstance(refused.value, NotFound if step == "import-record" else Conflict)
    assert image_records.get(prepared_host.uri, IMAGES_POOL, f"{name}.qcow2") is not None
    said = _recovered(kvmhub)
    assert "rolled-back" in said, said
    assert host_state(prepared_host) == before
    assert image_records.get(prepared_host.uri, IMAGES_POOL, f"{name}.qcow2") is None
    r = kvmhub("create", "uses-it", "--image", name, "--no-start")
    assert r.code == 3 and f"no image named {name!r}" in r.err


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["vm.rm:domain.destroy", "vm.rm:domain.undefine", "vm.rm:lease.release",
                                  "vm.rm:volume.delete"])
def test_kill9_during_rm_is_finished_by_the_next_command(step: str, attempt: int, prepared_host: TestHost,
                                                         kvmhub: Runner) -> None:
    name = f"k9rm-{attempt}"
    before = host_state(prepared_host)
    assert kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "128M").code == 0
    code, _ = kill_at(prepared_host, ["rm", name], step)
    assert code == -signal.SIGKILL
    assert host_state(prepared_host) != before  # killed halfway: the rest is still there
    said = _recovered(kvmhub)
    assert "recovered interrupted operation" in said and "completed" in said, said
    assert host_state(prepared_host) == before
    assert kvmhub("ops", "ls", "--json").json()[0]["state"] == "completed"


# -- clone, VM import, backup, snapshots of one shut-off source that has run (its disk gets frozen) ---------

SRC = "k9-src"


@pytest.fixture(scope="module")
def source(prepared_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny VM that has booted and is shut off, and an export archive of it; removed after the module."""
    assert kvmhub("create", SRC, "--image", "tiny", "--network", LAB_NET, "--memory", "128M", "--wait",
                  "--timeout", "240").code == 0
    assert kvmhub("kill", SRC).code == 0
    archive = tmp_path_factory.mktemp("export") / "src.tar.gz"
    r = kvmhub("export", SRC, "--to", str(archive))
    assert r.code == 0, r.err
    yield archive
    kvmhub("rm", SRC)


def _kill_and_recover(host: TestHost, kvmhub: Runner, argv: list[str], step: str) -> None:
    before = host_state(host)
    code, _ = kill_at(host, argv, step)
    assert code == -signal.SIGKILL
    said = _recovered(kvmhub)
    assert "rolled-back" in said, said + kvmhub("ops", "show", kvmhub("ops", "ls", "--json").json()[0]["id"]).out
    after = host_state(host)
    assert after == before, differences(before, after)


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["clone-renamed", "clone-freeze", "clone-disk", "clone-seed", "clone-address",
                                  "clone-define"])
def test_kill9_during_linked_clone(step: str, attempt: int, prepared_host: TestHost, kvmhub: Runner,
                                   source: Path) -> None:
    _kill_and_recover(prepared_host, kvmhub, ["clone", SRC, f"k9-lc{attempt}", "--linked"], step)
    assert kvmhub("start", SRC).code == 0  # the source still has its disk
    assert kvmhub("kill", SRC).code == 0


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["clone-disk", "clone-seed", "clone-address", "clone-define"])
def test_kill9_during_full_clone(step: str, attempt: int, prepared_host: TestHost, kvmhub: Runner,
                                 source: Path) -> None:
    _kill_and_recover(prepared_host, kvmhub, ["clone", SRC, f"k9-fc{attempt}"], step)


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["vm-import-disk", "vm-import-address", "vm-import-define"])
def test_kill9_during_vm_import(step: str, attempt: int, prepared_host: TestHost, kvmhub: Runner,
                                source: Path) -> None:
    _kill_and_recover(prepared_host, kvmhub, ["import", str(source), "--as", f"k9-imp{attempt}"], step)


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["backup-started-paused", "backup-job", "backup-copied"])
def test_kill9_during_backup(step: str, attempt: int, prepared_host: TestHost, kvmhub: Runner, source: Path,
                             tmp_path: Path) -> None:
    target = tmp_path / "backups"
    _kill_and_recover(prepared_host, kvmhub, ["backup", SRC, "--to", str(target)], step)
    assert not target.exists() or sorted(p.name for p in target.iterdir()) == []


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["snapshot-owned", "snapshot-taken"])
def test_kill9_during_snapshot_create(step: str, attempt: int, prepared_host: TestHost, kvmhub: Runner,
                                      source: Path) -> None:
    _kill_and_recover(prepared_host, kvmhub, ["snapshot", "create", SRC, f"k9-s{attempt}", "--disk-only"], step)


@pytest.mark.parametrize("attempt", [1, 2])
def test_kill9_during_snapshot_merge_leaves_no_paused_vm(attempt: int, prepared_host: TestHost, kvmhub: Runner,
                                                         source: Path) -> None:
    before = host_state(prepared_host)
    assert kvmhub("snapshot", "create", SRC, "k9-merge", "--disk-only").code == 0
    code, _ = kill_at(prepared_host, ["snapshot", "rm", SRC, "k9-merge"], "snapshot-rm-paused")
    assert code == -signal.SIGKILL
    said = _recovered(kvmhub)  # the next command stops the VM the merge had started
    assert "recovered interrupted operation" in said, said
    assert kvmhub("show", SRC, "--json").json()["state"] == "shut off"
    r = kvmhub("snapshot", "rm", SRC, "k9-merge")  # an interrupted merge is finished by running it again
    assert r.code == 0, r.err
    assert host_state(prepared_host) == before


# -- disks, volumes, networks, pools --------------------------------------------------------------------------

IDLE = "k9-idle"


@pytest.fixture(scope="module")
def idle_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """A VM that was never started (disks are added to its definition only); removed after the module."""
    r = kvmhub("create", IDLE, "--image", "tiny", "--memory", "128M", "--no-start")
    assert r.code == 0, r.err
    yield IDLE
    kvmhub("rm", IDLE)


def _disks_of(kvmhub: Runner, vm: str) -> list[str]:
    return sorted(d["target"] for d in kvmhub("disk", "ls", vm, "--json").json())


@pytest.mark.parametrize("step", ["disk-volume", "disk-attach"])
def test_kill9_during_disk_add_takes_back_volume_and_disk(step: str, prepared_host: TestHost, kvmhub: Runner,
                                                         idle_vm: str) -> None:
    disks = _disks_of(kvmhub, idle_vm)
    _kill_and_recover(prepared_host, kvmhub, ["disk", "add", idle_vm, "--size", "16M", "--bus", "scsi"], step)
    assert _disks_of(kvmhub, idle_vm) == disks
    out = kvmhub("disk", "add", idle_vm, "--size", "16M")  # the name the dead add had picked is free again
    assert out.code == 0, out.err
    assert kvmhub("disk", "rm", idle_vm, "vdb").code == 0


def _kill9_recovers(host: TestHost, kvmhub: Runner, argv: list[str], step: str) -> None:
    """kill -9 at ``step``; the kill left something, the next command takes all of it back."""
    before = host_state(host)
    code, _ = kill_at(host, argv, step)
    assert code == -signal.SIGKILL
    assert host_state(host) != before
    said = _recovered(kvmhub)
    assert "rolled-back" in said, said
    after = host_state(host)
    assert after == before, differences(before, after)


@pytest.mark.parametrize("attempt", [1, 2])
def test_kill9_during_vol_create_and_vol_clone(attempt: int, prepared_host: TestHost, kvmhub: Runner) -> None:
    pool = DISKS_POOL
    _kill9_recovers(prepared_host, kvmhub, ["vol", "create", f"{pool}/k9v{attempt}", "--size", "16M"], "vol-create")
    assert kvmhub("vol", "create", f"{pool}/k9src{attempt}", "--size", "16M").code == 0
    try:
        for linked in ([], ["--linked"]):
            _kill9_recovers(prepared_host, kvmhub, ["vol", "clone", f"{pool}/k9src{attempt}",
                                                    f"k9copy{attempt}", *linked], "vol-clone")
        r = kvmhub("vol", "show", f"{pool}/k9copy{attempt}")
        assert r.code == 3, r.out  # the copy is gone, and the name is free for the next try
    finally:
        kvmhub("vol", "rm", f"{pool}/k9src{attempt}")


@pytest.mark.parametrize("step", ["net-define", "net-start"])
def test_kill9_during_net_create(step: str, prepared_host: TestHost, kvmhub: Runner) -> None:
    name = f"k9n-{step.split('-')[1]}"
    _kill9_recovers(prepared_host, kvmhub, ["net", "create", name, "--mode", "isolated"], step)
    assert kvmhub("net", "show", name).code == 3


@pytest.mark.parametrize("step", ["pool-define", "pool-build", "pool-start"])
def test_kill9_during_dir_pool_create_leaves_no_pool_and_no_directory(step: str, prepared_host: TestHost,
                                                                      kvmhub: Runner) -> None:
    name = f"k9p-{step.split('-')[1]}"
    path = f"/var/lib/libvirt/{name}"
    _kill9_recovers(prepared_host, kvmhub, ["pool", "create", name, "--type", "dir", "--path", path], step)
    assert kvmhub("pool", "show", name).code == 3
    assert not prepared_host.inside(path).exists()  # kvmhub made it, so the undo removed it
