"""Image records: what kvmhub learnt when it imported each image, kept in kvmhub's state database.

A record is keyed by the libvirt host's URI, the pool and the image's volume name, and holds the volume's key as
the import stored it: once that volume is replaced by another of the same name (another key), the record is stale
and counts as none. The import that writes a record names itself in it (``writer``, its operation's id), so its
undo removes that record and never one written later.

Earlier versions kept each record in a JSON volume ``NAME.json`` beside the image; :func:`adopt_legacy` moves them
into the database.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kvmhub.errors import HostProblem, KvmhubError
from kvmhub.hv import storage as hv_storage
from kvmhub.models.image import ImageMeta
from kvmhub.ops.journal import connect, transaction
from kvmhub.ops.locks import LockSpec, LockTimeout, hold

LEGACY_SUFFIX = ".json"
LEGACY_MAX = 64 * 1024
ADOPTED = "adopted"  # the writer of a record taken over from a JSON volume
LEGACY = "legacy"  # the writer of a JSON record read where it is, not adopted yet

_COLUMNS = ("complete, source, sha256, checksum_verified, original_format, compression, os, imported, "
            "volume_key, writer, project")


@dataclass(frozen=True)
class Record:
    """One image's record, the key of the volume it was written for, and who wrote it."""

    meta: ImageMeta
    key: str | None
    writer: str

    def matches(self, key: str) -> bool:
        """False when the record was written for another volume that had this name (a stale record)."""
        return self.key is None or self.key == key


def _record(row: tuple[Any, ...]) -> Record:
    meta = ImageMeta(complete=bool(row[0]), source=str(row[1]), sha256=str(row[2]),
                     checksum_verified=row[3], original_format=str(row[4]), compression=row[5], os=row[6],
                     imported=datetime.fromisoformat(str(row[7])), project=row[10])
    return Record(meta, None if row[8] is None else str(row[8]), str(row[9]))


def put(uri: str, pool: str, volume: str, meta: ImageMeta, *, key: str | None, writer: str,
        db_file: Path | None = None) -> None:
    """Write (or replace) the record of image volume ``pool/volume`` on host ``uri``."""
    with transaction(connect(db_file)) as db:
        db.execute(
            f"INSERT OR REPLACE INTO images (uri, pool, volume, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
            (uri, pool, volume, int(meta.complete), meta.source, meta.sha256, meta.checksum_verified,
             meta.original_format, meta.compression, meta.os, meta.imported.isoformat(), key, writer,
             meta.project),
        )


def get(uri: str, pool: str, volume: str, *, db_file: Path | None = None) -> Record | None:
    """The record of ``pool/volume`` on host ``uri``, stale or not; None when there is none."""
    row = connect(db_file).execute(f"SELECT {_COLUMNS} FROM images WHERE uri=? AND pool=? AND volume=?",  # noqa: S608
                                   (uri, pool, volume)).fetchone()
    return _record(row) if row is not None else None


def in_pool(uri: str, pool: str, *, db_file: Path | None = None) -> dict[str, Record]:
    """Every record of ``pool`` on host ``uri``, by volume name."""
    rows = connect(db_file).execute(f"SELECT volume, {_COLUMNS} FROM images WHERE uri=? AND pool=?",  # noqa: S608
                                    (uri, pool)).fetchall()
    return {str(r[0]): _record(r[1:]) for r in rows}


def forget(uri: str, pool: str, volume: str, *, writer: str | None = None, db_file: Path | None = None) -> bool:
    """Delete the record of ``pool/volume`` (only the one ``writer`` wrote, when given); False when none was."""
    try:
        with transaction(connect(db_file)) as db:
            cur = db.execute("DELETE FROM images WHERE uri=? AND pool=? AND volume=? AND (? IS NULL OR writer=?)",
                             (uri, pool, volume, writer, writer))
    except sqlite3.Error as exc:
        raise HostProblem(f"cannot delete the record of image volume {pool}/{volume}", cause=str(exc),
                          hint="check the file system holding kvmhub's state database") from exc
    return cur.rowcount > 0


# -- records of earlier versions: JSON volumes beside the images ---------------------------------------------


def legacy_name(image: str) -> str:
    """The JSON volume in which earlier versions kept image ``image``'s record."""
    return image + LEGACY_SUFFIX


def has_legacy(names: Iterable[str]) -> bool:
    """True when a pool with these volumes may hold earlier versions' JSON records."""
    return any(n.endswith(LEGACY_SUFFIX) for n in names)


def read_legacy(pool: hv_storage.Pool, vol_name: str) -> ImageMeta | None:
    """The record in JSON volume ``vol_name``; None when it is unreadable or not an image record."""
    try:
        vol = pool.volume(vol_name)
        if vol.info().capacity > LEGACY_MAX:
            return None
        buf = io.BytesIO()
        vol.download(buf)
        return ImageMeta.model_validate_json(buf.getvalue())
    except (KvmhubError, ValidationError, OSError):
        return None


def adopt_legacy(pool: hv_storage.Pool, names: set[str], image_suffix: str) -> dict[str, Record]:
    """Move the JSON records of earlier versions in ``pool`` into the database and delete their volumes.

    Each one is adopted holding its image's lock (which imports and removals hold): a record is never taken from
    under an import that is writing it. An image busy now is left for a later call; its JSON record is returned
    (by the image's volume name) to be read meanwhile. Safe to repeat after a crash at any point: the database
    record is written before the JSON volume is deleted, and a database record that matches the image wins.
    A JSON volume that is not an image record is left alone.
    """
    left: dict[str, Record] = {}
    for vol_name in sorted(n for n in names if n.endswith(LEGACY_SUFFIX)):
        image = vol_name.removesuffix(LEGACY_SUFFIX)
        try:
            with hold(pool.hv.uri, [LockSpec("image", image)], timeout=0):
                _adopt(pool, image, image + image_suffix, vol_name)
        except LockTimeout:
            if (meta := read_legacy(pool, vol_name)) is not None:
                left[image + image_suffix] = Record(meta, None, LEGACY)
    return left


def _adopt(pool: hv_storage.Pool, image: str, image_vol: str, vol_name: str) -> None:
    meta = read_legacy(pool, vol_name)
    if meta is None:
        return
    uri = pool.hv.uri
    if pool.has_volume(image_vol):
        key = pool.volume(image_vol).key
        current = get(uri, pool.name, image_vol)
        if current is None or not current.matches(key):
            put(uri, pool.name, image_vol, meta, key=key, writer=ADOPTED)
    # a record without its image (removed behind kvmhub's back) is dropped, as imports of that name always did
    with contextlib.suppress(KvmhubError):  # deleted meanwhile by another kvmhub process: done as well
        pool.volume(vol_name).delete()
