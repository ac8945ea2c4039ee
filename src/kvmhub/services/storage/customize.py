"""Offline editing of an image (``image customize``) or of a shut-off VM's disk (``disk edit``) with libguestfs.

The edits never touch the disk directly: libguestfs works on a qcow2 overlay backed by it, made in kvmhub's state
directory and journalled for removal. Only when every edit succeeded is the overlay committed into the disk
(``qemu-img commit``) and removed; a failure, Ctrl-C, a cancel or a killed process leaves the disk as it was.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kvmhub.errors import Conflict, HostProblem, InvalidInput, NotFound
from kvmhub.hv import Hypervisor, host_root
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.models.customize import CustomizeRequest, CustomizeResult, DiskEditRequest
from kvmhub.models.vm import DiskSpec
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.ops.paths import private_dir, state_dir
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import undo_actions
from kvmhub.services.host import accel
from kvmhub.services.storage import images
from kvmhub.services.storage import usage as storage_usage
from kvmhub.services.vm import lifecycle as vms
from kvmhub.tools import guestfs_edit, qemu_img
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_from_xml


def _local(hv: Hypervisor, what: str) -> None:
    if not hv.is_local:
        raise HostProblem(f"cannot edit {what} over {hv.uri}", cause="libguestfs reads the disk file itself, so it "
                          "runs on the host that holds it", hint="run the command on that host, or through the "
                          "kvmhub server running there ({opt:remote})", code="hv.unsupported")


def customize_image(hv: Hypervisor, name: str, req: CustomizeRequest, *, report: Reporter = QUIET) -> CustomizeResult:
    """Apply ``req`` to image ``name`` in one pass.

    Refused while VMs are linked clones of the image, or volumes are backed by it (their data would no longer
    match the base they were made from): Conflict naming them.
    """
    check_name(name, "image")
    _local(hv, f"image {name}")
    with Operation(hv, "image.customize", name, locks=[LockSpec("image", name)], report=report) as op:
        vol = images.get(hv, name)
        users = storage_usage.scan(hv).vms_using(vol.pool, vol.name, vol.path)
        overlays = storage_usage.overlays_of(hv, vol.path)
        if users or overlays:
            what = ", ".join([*(f"VM {u}" for u in users), *(f"volume {o}" for o in overlays)])
            raise Conflict(f"image {name!r} is the base of {what}", code="image.in_use",
                           cause="their disks are linked clones holding only their changes to this image: editing "
                                 "it would change what they read",
                           hint=f"import a copy under a new name ({{cmd:image import {vol.path} --name NEW}}) and "
                                "customize that, or remove those first")
        fmt = xml_volume.volume_from_xml(vol.xml()).format or "qcow2"
        result = _edit(op, vol.path, fmt, f"image {name}", req)
        op.success()
    return result


def _disk(spec_disks: list[DiskSpec], vm: str, target: str | None) -> DiskSpec:
    disks = [d for d in spec_disks if d.device == "disk"]
    if target is None:
        if not disks:
            raise NotFound(f"VM {vm} has no disk", code="disk.not_found")
        return disks[0]
    for d in spec_disks:
        if d.target == target:
            if d.device != "disk":
                raise InvalidInput(f"{target} of {vm} is a CD-ROM drive", hint="name a disk ({cmd:disk ls " + vm + "})")
            return d
    raise NotFound(f"VM {vm} has no disk {target!r}", hint=f"{{cmd:disk ls {vm}}} lists them", code="disk.not_found")


def check_shut_off(dom: hv_domains.Domain) -> None:
    """Conflict (naming ``kvmhub stop``) unless the VM is shut off."""
    if dom.is_active():
        raise Conflict(f"cannot edit the disks of {dom.name}: it is {dom.state()}",
                       cause="a disk must not change under a running guest (its file systems are mounted)",
                       hint=f"stop it first: {{cmd:stop {dom.name}}}", code="vm.wrong_state")


def edit_disk(hv: Hypervisor, vm: str, req: DiskEditRequest, *, report: Reporter = QUIET) -> CustomizeResult:
    """Apply ``req`` to disk ``req.disk`` (default: the first) of VM ``vm``, which must be shut off.

    Refused (before anything changes) for a running or paused VM, a read-only, encrypted or network disk, a disk
    other VMs also use, and one other volumes are backed by.
    """
    _local(hv, f"the disks of {vm}")
    dom = vms.get(hv, vm)  # checks the name
    with Operation(hv, "disk.edit", vm, locks=[LockSpec("vm", vm)], report=report) as op:
        check_shut_off(dom)
        disk = _disk(domain_from_xml(dom.xml(inactive=True)).disks, vm, req.disk)
        label = f"{disk.target} of {vm}"
        src = disk.source
        if src.protocol is not None:
            raise InvalidInput(f"cannot edit {label}: it is a network disk",
                               cause="libguestfs edits disk files on this host")
        if disk.readonly or disk.encryption_secret:
            raise InvalidInput(f"cannot edit {label}: it is {'read-only' if disk.readonly else 'encrypted'}")
        path = src.path
        if src.pool and src.volume:
            path = hv_storage.lookup_pool(hv, src.pool).volume(src.volume).path
        if not path:
            raise InvalidInput(f"cannot edit {label}: it has no source")
        others = [u for u in storage_usage.scan(hv).vms_using(src.pool or "", src.volume or "", path) if u != vm]
        overlays = storage_usage.overlays_of(hv, path)
        if others or overlays:
            raise Conflict(f"cannot edit {label}: it is also read by {', '.join([*others, *overlays])}",
                           cause="editing it would change what those read as their base", code="volume.in_use")
        result = _edit(op, path, disk.format, label, req)
        op.success()
    return result


def _chain_spec(path: str, fmt: str, root: str) -> str:
    """``path`` with its backing chain as a qemu ``json:`` name, each backing file seen through ``root``.

    A disk's backing file names a path of its host; where that host's files are seen under a root (a test host),
    QEMU must be told where each one is, or it looks for them here.
    """
    def node(seen: str, node_fmt: str, depth: int) -> dict[str, Any]:
        spec: dict[str, Any] = {"driver": node_fmt, "file": {"driver": "file", "filename": seen}}
        info = qemu_img.info(Path(seen), node_fmt)
        backing = info.get("backing-filename")
        if backing and depth < 16:
            below = f"{root}{backing}" if backing.startswith("/") else os.path.join(os.path.dirname(seen), backing)
            spec["backing"] = node(below, info.get("backing-filename-format") or "qcow2", depth + 1)
        return spec

    return "json:" + json.dumps(node(path, fmt, 0))


def _edit(op: Operation, host_path: str, fmt: str, label: str, req: CustomizeRequest) -> CustomizeResult:
    """Edit ``host_path`` through a journalled overlay; commit it only when every edit succeeded."""
    start = time.monotonic()
    report = op.report
    base = f"{host_root()}{host_path}"
    work = private_dir(state_dir() / "edits")
    overlay = str(work / f"{op.id}.qcow2")
    op.phase("overlay")
    op.add(f"remove the overlay {overlay}", undo_actions.remove_file(overlay, seen_here=True))
    backing = _chain_spec(base, fmt, host_root()) if host_root() else base
    qemu_img.run(["create", "-q", "-f", "qcow2", "-b", backing, "-F", fmt, overlay],
                 what=f"making an overlay on {label}")
    op.made(inode=os.stat(overlay).st_ino)
    tcg = accel.accelerator().accelerator == "tcg"
    op.phase("launch")
    with guestfs_edit.GuestEditor(overlay, "qcow2", tcg=tcg, label=label, say=report.note) as editor:
        report.note(f"{label}: {editor.found}")
        op.phase("edit")
        changes = editor.apply(req)
    op.phase("commit")
    op.cancel.check()
    op.add(f"commit the edits into {label}")  # from here the disk changes: no undo
    qemu_img.run(["commit", "-q", "-f", "qcow2", overlay], what=f"writing the edits into {label}")
    os.unlink(overlay)
    return CustomizeResult(target=label, found=editor.found, changes=changes,
                           seconds=round(time.monotonic() - start, 2), launch_seconds=round(editor.launch_seconds, 2))
