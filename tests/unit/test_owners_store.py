"""The owners kept on disk between processes (services/owners_store.py) and how `owners` uses them."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.services import owners, owners_store

URI = "qemu:///system"
U1, U2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(directory))
    return directory


def test_saved_owners_are_loaded_by_the_next_reader(state: Path) -> None:
    owners_store.save(URI, [(U1, "web"), (U2, "default")])
    loaded = owners_store.load(URI, 60.0)
    assert {u: p for u, (p, _) in loaded.items()} == {U1: "web", U2: "default"}
    # their age carries over as monotonic time: just seen
    assert all(0 <= time.monotonic() - seen < 5 for _, seen in loaded.values())
    assert stat.S_IMODE(os.stat(state / owners_store.FILE_NAME).st_mode) == 0o600


def test_entries_are_per_host_and_age_out(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owners_store.save(URI, [(U1, "web")])
    assert owners_store.load("qemu+ssh://other/system", 60.0) == {}
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert owners_store.load(URI, 60.0) == {}


def test_an_entry_from_the_future_is_not_trusted(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owners_store.save(URI, [(U1, "web")])
    earlier = time.time() - 30  # the clock went back
    monkeypatch.setattr(time, "time", lambda: earlier)
    assert owners_store.load(URI, 60.0) == {}


def test_forget_drops_the_vm_on_every_host(state: Path) -> None:
    owners_store.save(URI, [(U1, "web"), (U2, "db")])
    owners_store.save("qemu+ssh://other/system", [(U1, "web")])
    owners_store.forget(U1)
    assert list(owners_store.load(URI, 60.0)) == [U2]
    assert owners_store.load("qemu+ssh://other/system", 60.0) == {}


def test_no_state_directory_means_no_cache_and_nothing_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "absent"
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(missing))
    owners_store.save(URI, [(U1, "web")])
    owners_store.forget(U1)
    assert owners_store.load(URI, 60.0) == {}
    assert not missing.exists()


def test_a_damaged_file_is_dropped_and_made_again(state: Path) -> None:
    (state / owners_store.FILE_NAME).write_bytes(b"not a database, " * 512)
    assert owners_store.load(URI, 60.0) == {}
    assert not (state / owners_store.FILE_NAME).exists()
    owners_store.save(URI, [(U1, "web")])
    assert list(owners_store.load(URI, 60.0)) == [U1]


def test_the_test_driver_is_not_kept() -> None:
    assert not owners_store.kept("test:///default")
    assert owners_store.kept("qemu:///system")


def test_owners_answers_from_disk_without_reading_metadata(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owners_store, "kept", lambda uri: True)  # the test driver's VM, as if on a real host
    monkeypatch.setattr(owners, "_owners", {})
    with Hypervisor("test:///default") as hv:
        first = owners.owners(hv)  # read from the metadata, then kept
        assert first == {"test": "default"}
        uuid = hv_domains.lookup(hv, "test").uuid
        assert list(owners_store.load(hv.uri, 60.0)) == [uuid]

        owners._owners.clear()  # a new process

        def no_reads(*args: object) -> dict[str, str | None]:
            raise AssertionError("metadata read although the owner is on disk")

        monkeypatch.setattr(hv_domains, "metadata_of", no_reads)
        assert owners.owners(hv) == first
        owners.forget(uuid)
        assert owners_store.load(hv.uri, 60.0) == {}
