"""Bases of linked clones: the frozen volumes clones are backed by, and their release once nothing sits on them.

A base is named ``base-<8 hex>.qcow2`` in the pool of the disk it was frozen from; images and other volumes
are never treated as bases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.ops.actions import Action, Context, register
from kvmhub.reporting import QUIET, Reporter
from kvmhub.xml import volume as xml_volume

BASE_RE = re.compile(r"^base-[0-9a-f]{8}\.qcow2$")


def is_base(path: str) -> bool:
    """True for a base volume made by a linked clone (``base-<8 hex>.qcow2``)."""
    return bool(BASE_RE.match(os.path.basename(path)))


def release_bases(hv: Hypervisor, backing_paths: Iterable[str], report: Reporter = QUIET) -> list[str]:
    """Delete the bases among `backing_paths` that no volume of their pool is backed by any more, then the
    bases under those, and so on. Images and other volumes are never touched. Returns what was deleted."""
    removed: list[str] = []
    todo = [p for p in backing_paths if p]
    while todo:
        path = todo.pop()
        if not is_base(path):
            continue
        vol = hv_storage.volume_by_path(hv, path)
        if vol is None:
            continue
        try:
            pool = hv_storage.lookup_pool(hv, vol.pool)
            users = [n for n in pool.volume_names() if n != vol.name and _backing_of(pool, n) == path]
            if users:
                continue
            below = xml_volume.volume_from_xml(vol.xml()).backing_path
            vol.delete()
        except KvmhubError as exc:
            report.warn(f"could not release base {path}: {exc.message}")
            continue
        removed.append(f"{vol.pool}/{vol.name}")
        if below:
            todo.append(below)
    return removed


def release_bases_action(backing_paths: Iterable[str]) -> Action:
    """A journalled :func:`release_bases` (rm plans it before it deletes the volumes above the bases)."""
    return Action("bases.release", {"paths": [p for p in backing_paths if p]})


@register("bases.release")
def _release_bases(ctx: Context, p: dict[str, Any]) -> None:
    release_bases(ctx.hv, p["paths"])


def _backing_of(pool: hv_storage.Pool, name: str) -> str | None:
    try:
        return xml_volume.volume_from_xml(pool.volume(name).xml()).backing_path
    except KvmhubError:
        return None  # deleted meanwhile


def backing_path(hv: Hypervisor, ref: str) -> str | None:
    """The backing file of volume ``pool/volume``, if it has one (None too when it is gone)."""
    pool_name, _, vol = ref.partition("/")
    try:
        return _backing_of(hv_storage.lookup_pool(hv, pool_name), vol)
    except KvmhubError:
        return None
