"""``/vms/{name}/disks``: list a VM's disks; add, remove and grow them (live when it runs) as operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from kvmhub.errors import NotFound
from kvmhub.hv import Hypervisor
from kvmhub.models import OperationInfo
from kvmhub.models.disk import DiskAddRequest, DiskChange, DiskInfo, DiskResize, DiskResizeRequest
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.server.scope import visible_volume
from kvmhub.services.storage import disks
from kvmhub.services.vm import lifecycle as vms
from kvmhub.validate import parse_size

router = APIRouter(prefix="/vms/{name}/disks", tags=["disks"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Target = Annotated[str, Path(pattern=r"^[a-z]{2,4}[a-z0-9]{0,8}$", description="the disk's device name, e.g. vdb")]


def _check_disk(hv: Hypervisor, name: str, target: str) -> None:
    """A missing VM or disk is a 404 before any operation starts."""
    if all(d.target != target for d in disks.list_disks(hv, name)):
        raise NotFound(f"VM {name} has no disk {target!r}", hint=f"list them: GET /api/v1/vms/{name}/disks",
                       code="disk.not_found")


@router.get("", response_model=list[DiskInfo], dependencies=[VIEWER])
def list_disks(name: Name, hv: Hv) -> list[DiskInfo]:
    """A VM's disks and CD-ROM drives: target, bus, source, format, sizes, whether kvmhub owns the volume."""
    return disks.list_disks(hv, name)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def add_disk(name: Name, req: DiskAddRequest, hv: Hv, ops: Ops, response: Response,
             caller: Caller) -> OperationInfo:
    """Add a disk: a new volume of ``size``, an existing volume ``vol`` (POOL/VOLUME) or a network export
    ``url``; hot-plugged when the VM runs, always persisted. The result is the disk and whether it was live."""
    vms.get(hv, name)
    visible_volume(hv, caller, req.vol)
    if req.size is not None:
        parse_size(req.size, what="disk size", default_unit="G")

    def work(report: Reporter) -> DiskChange:
        disk, live = disks.add(hv, name, size=req.size, vol=req.vol, url=req.url, bus=req.bus,
                               readonly=req.readonly, fmt=req.format, encrypt=req.encrypt, target=req.target,
                               report=report)
        return DiskChange(disk=disk, live=live)

    return accepted(response, ops.submit("disk.add", name, work, vm=name))


@router.delete("/{target}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_disk(name: Name, target: Target, hv: Hv, ops: Ops, response: Response,
                keep: Annotated[bool, Query(description="keep the volume kvmhub made for it")] = False,
                ) -> OperationInfo:
    """Remove a disk (detached live when the VM runs); the volume kvmhub made for it is deleted unless ``keep``.
    The result is the disk, whether it was live and the volumes deleted."""
    _check_disk(hv, name, target)

    def work(report: Reporter) -> DiskChange:
        disk, live, deleted = disks.remove(hv, name, target, keep=keep, report=report)
        return DiskChange(disk=disk, live=live, deleted=deleted)

    return accepted(response, ops.submit("disk.rm", name, work, vm=name))


@router.post("/{target}/resize", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def resize_disk(name: Name, target: Target, req: DiskResizeRequest, hv: Hv, ops: Ops,
                response: Response) -> OperationInfo:
    """Grow a disk to ``size`` (disks only grow): live when the VM runs, else its volume. The result gives the
    old and new sizes in bytes."""
    _check_disk(hv, name, target)
    parse_size(req.size, what="disk size", default_unit="G")

    def work(report: Reporter) -> DiskResize:
        old, new, live = disks.resize(hv, name, target, req.size, report=report)
        return DiskResize(target=target, old_bytes=old, new_bytes=new, live=live)

    return accepted(response, ops.submit("disk.resize", name, work, vm=name))
