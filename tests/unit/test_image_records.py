"""Image records in kvmhub's state database: the migration that makes their table, keys, staleness, undo."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.models.image import ImageMeta
from kvmhub.ops import actions, journal, paths
from kvmhub.services import undo_actions
from kvmhub.services.storage import image_records

URI = "qemu+ssh://root@h1/system"
META = ImageMeta(source="https://example.org/d.qcow2", sha256="ab" * 32, checksum_verified="sha256",
                 original_format="vmdk", compression="xz", os="debian12",
                 imported=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def hv() -> Iterator[Hypervisor]:
    with Hypervisor("test:///default") as conn:
        yield conn


def test_a_journal_of_schema_1_gets_the_images_table_and_keeps_its_operations(state: Path) -> None:
    state.mkdir(mode=0o700)
    raw = sqlite3.connect(state / paths.DB_NAME)
    raw.executescript(journal.MIGRATIONS[0])
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    raw.execute("INSERT INTO operations (id, kind, target, uri, pid, state, started) "
                "VALUES ('op1', 'vm.create', 'web', 'test:///default', 1, 'succeeded', 0)")
    raw.commit()
    raw.close()
    image_records.put(URI, "kvmhub-images", "deb.qcow2", META, key="/p/deb.qcow2", writer="op2")
    db = sqlite3.connect(state / paths.DB_NAME)
    assert db.execute("SELECT version FROM schema_version").fetchone() == (len(journal.MIGRATIONS),)
    assert db.execute("SELECT id FROM operations").fetchall() == [("op1",)]
    assert db.execute("SELECT volume, writer FROM images").fetchall() == [("deb.qcow2", "op2")]


def test_a_record_reads_back_as_written_and_only_for_its_host_and_pool() -> None:
    image_records.put(URI, "kvmhub-images", "deb.qcow2", META, key="/p/deb.qcow2", writer="op1")
    record = image_records.get(URI, "kvmhub-images", "deb.qcow2")
    assert record is not None and record.meta == META and record.key == "/p/deb.qcow2" and record.writer == "op1"
    assert image_records.get("qemu+ssh://root@h2/system", "kvmhub-images", "deb.qcow2") is None
    assert image_records.get(URI, "other", "deb.qcow2") is None
    assert set(image_records.in_pool(URI, "kvmhub-images")) == {"deb.qcow2"}
    assert image_records.in_pool(URI, "other") == {}


def test_a_record_keeps_the_project_the_image_was_imported_for() -> None:
    image_records.put(URI, "kvmhub-images", "web.qcow2", META.model_copy(update={"project": "web"}), key=None,
                      writer="op1")
    record = image_records.get(URI, "kvmhub-images", "web.qcow2")
    assert record is not None and record.meta.project == "web"


def test_a_record_for_another_volume_of_that_name_is_stale() -> None:
    image_records.put(URI, "kvmhub-images", "deb.qcow2", META, key="key-1", writer="op1")
    record = image_records.get(URI, "kvmhub-images", "deb.qcow2")
    assert record is not None and record.matches("key-1") and not record.matches("key-2")
    image_records.put(URI, "kvmhub-images", "deb.qcow2", META.model_copy(update={"complete": False}), key=None,
                      writer="op2")
    running = image_records.get(URI, "kvmhub-images", "deb.qcow2")
    assert running is not None and running.matches("key-2") and not running.meta.complete


def test_the_undo_of_an_import_removes_its_own_record_and_never_a_later_one(hv: Hypervisor) -> None:
    ctx = actions.Context(hv)
    image_records.put(hv.uri, "kvmhub-images", "a.qcow2", META, key=None, writer="op1")
    image_records.put(hv.uri, "kvmhub-images", "b.qcow2", META, key=None, writer="op2")
    actions.run(ctx, undo_actions.forget_image_record("kvmhub-images", "b.qcow2", "op1"))
    assert image_records.get(hv.uri, "kvmhub-images", "b.qcow2") is not None  # written by another operation
    actions.run(ctx, undo_actions.forget_image_record("kvmhub-images", "a.qcow2", "op1"))
    assert image_records.get(hv.uri, "kvmhub-images", "a.qcow2") is None
    actions.run(ctx, undo_actions.forget_image_record("kvmhub-images", "a.qcow2", "op1"))  # gone: done
    assert set(image_records.in_pool(hv.uri, "kvmhub-images")) == {"b.qcow2"}
