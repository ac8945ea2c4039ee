"""The actions operations journal for their undo (and rm for its roll-forward), by kind.

Each handler removes exactly what its step recorded: a domain by UUID, a volume by pool, name and key, a
reservation by network and MAC, a secret by UUID, a file by path and inode. Anything already gone counts as done;
anything that no longer matches what was recorded (same name, other UUID or key) is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv import backup as hv_backup
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.ops.actions import Action, Context, register
from kvmhub.services.network import forwards, leases
from kvmhub.services.storage import encryption, image_records
from kvmhub.tools import qemu_img
from kvmhub.xml import snapshot as xml_snap

BUILDING_RE = re.compile(r"still being allocated|still in use", re.IGNORECASE)
BUILD_PATIENCE = 30.0  # seconds an undo waits for libvirt to finish a copy before it gives up deleting it

# -- constructors (what services call) -------------------------------------------------------------------


def delete_volume(pool: str, name: str, key: str | None = None, *, building: bool = False) -> Action:
    """Delete a volume; ``building``: libvirt may still be copying into it (an interrupted clone), so wait."""
    return Action("volume.delete", {"pool": pool, "name": name, "key": key, "building": building})


def forget_image_record(pool: str, volume: str, writer: str) -> Action:
    """Delete the record of image volume ``pool/volume`` that ``writer`` wrote (an operation id), not a later one."""
    return Action("image_record.forget", {"pool": pool, "volume": volume, "writer": writer})


def undefine_domain(uuid: str, name: str) -> Action:
    return Action("domain.undefine", {"uuid": uuid, "name": name})


def destroy_domain(uuid: str, name: str, only_paused: bool = False) -> Action:
    return Action("domain.destroy", {"uuid": uuid, "name": name, "only_paused": only_paused})


def redefine_domain(uuid: str, name: str, xml: str) -> Action:
    return Action("domain.redefine", {"uuid": uuid, "name": name, "xml": xml})


def remove_device(uuid: str, name: str, device_xml: str, config: str) -> Action:
    """Take back a device a step plugged in: unplugged live when the VM runs, and the definition as it was before
    (``config``, the inactive XML) put back."""
    return Action("device.remove", {"uuid": uuid, "name": name, "device": device_xml, "config": config})


def release_lease(network: str, mac: str) -> Action:
    return Action("lease.release", {"network": network, "mac": mac})


def delete_secret(uuid: str) -> Action:
    return Action("secret.delete", {"uuid": uuid})


def remove_file(path: str, inode: int | None = None, *, seen_here: bool = False) -> Action:
    """Remove a file on the host (``seen_here``: a path already as this machine sees it, e.g. a backup file)."""
    return Action("file.remove", {"path": path, "inode": inode, "seen_here": seen_here})


def delete_checkpoint(uuid: str, checkpoint: str) -> Action:
    return Action("checkpoint.delete", {"uuid": uuid, "checkpoint": checkpoint})


def drop_forwards(vm: str) -> Action:
    return Action("forwards.drop", {"vm": vm})


# -- handlers ------------------------------------------------------------------------------------------


@register("volume.delete")
def _delete_volume(ctx: Context, p: dict[str, Any]) -> None:
    try:
        pool = hv_storage.lookup_pool(ctx.hv, p["pool"])
    except NotFound:
        return
    with contextlib.suppress(KvmhubError):
        pool.refresh()  # a volume made just before a crash may not be in libvirt's list yet
    if not pool.has_volume(p["name"]):
        return
    vol = pool.volume(p["name"])
    if p.get("key") and vol.path != p["key"]:
        return  # same name, another volume: not ours
    deadline = time.monotonic() + (BUILD_PATIENCE if p.get("building") else 0)
    while True:
        try:
            vol.delete()
            return
        except KvmhubError as exc:  # libvirt refuses to delete a volume while it still copies into it
            if not BUILDING_RE.search(f"{exc.message} {exc.original or ''}") or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


@register("image_record.forget")
def _forget_image_record(ctx: Context, p: dict[str, Any]) -> None:
    image_records.forget(ctx.hv.uri, p["pool"], p["volume"], writer=p["writer"])


@register("domain.undefine")
def _undefine(ctx: Context, p: dict[str, Any]) -> None:
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None:
        return
    if dom.is_active():
        dom.destroy()
    if dom.is_persistent():
        dom.undefine()


@register("domain.destroy")
def _destroy(ctx: Context, p: dict[str, Any]) -> None:
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None or not dom.is_active():
        return
    if p.get("only_paused") and dom.state() != "paused":
        return
    dom.destroy()


@register("domain.redefine")
def _redefine(ctx: Context, p: dict[str, Any]) -> None:
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is not None and not dom.is_persistent():
        return
    hv_domains.define(ctx.hv, p["xml"])


@register("device.remove")
def _remove_device(ctx: Context, p: dict[str, Any]) -> None:
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None:
        return
    if dom.is_active():
        with contextlib.suppress(KvmhubError):  # never plugged in, or gone already
            dom.detach_device(p["device"])
    if dom.is_persistent():
        hv_domains.define(ctx.hv, p["config"])


@register("lease.release")
def _release(ctx: Context, p: dict[str, Any]) -> None:
    leases.unregister(ctx.hv, p["network"], p["mac"])


@register("secret.delete")
def _delete_secret(ctx: Context, p: dict[str, Any]) -> None:
    encryption.delete_secret(ctx.hv, p["uuid"])


@register("file.remove")
def _remove_file(ctx: Context, p: dict[str, Any]) -> None:
    path = p["path"] if p.get("seen_here") else ctx.path(p["path"])
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if p.get("inode") is not None and st.st_ino != p["inode"]:
        return  # replaced since: not the file the step made
    os.unlink(path)


@register("checkpoint.delete")
def _delete_checkpoint(ctx: Context, p: dict[str, Any]) -> None:
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None or p["checkpoint"] not in {c.name for c in hv_backup.checkpoints(dom)}:
        return
    if dom.is_active():
        hv_backup.checkpoint(dom, p["checkpoint"]).delete()
        return
    # libvirt 9 deletes no checkpoint of a shut-off VM: drop its record, then the bitmaps it left in the disks
    hv_backup.checkpoint(dom, p["checkpoint"]).delete(metadata_only=True)
    if not ctx.hv.is_local:
        return
    for disk in xml_snap.domain_disks(dom.xml(inactive=True)):
        path = disk.source.path if disk.source is not None else None
        if disk.source is not None and disk.source.pool and disk.source.volume:
            with contextlib.suppress(KvmhubError):
                path = hv_storage.lookup_pool(ctx.hv, disk.source.pool).volume(disk.source.volume).path
        if path and disk.format == "qcow2" and not disk.readonly:
            with contextlib.suppress(KvmhubError):  # a disk the checkpoint did not cover has no such bitmap
                qemu_img.run(["bitmap", "--remove", "-f", "qcow2", ctx.path(path), p["checkpoint"]],
                             what=f"removing bitmap {p['checkpoint']}")


@register("forwards.drop")
def _drop_forwards(ctx: Context, p: dict[str, Any]) -> None:
    forwards.drop(ctx.hv, p["vm"])
