"""``/vms/{name}/backups`` and ``/backups/restore``: a VM's backup points, taking one, restoring from them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models import BackupRequest, OperationInfo, RestoreRequest, VMInfo
from kvmhub.models.backup import BackupInfo, BackupOptions
from kvmhub.reporting import Reporter
from kvmhub.server.auth import ADMIN, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.server.scope import visible_vm
from kvmhub.services.snapshots import backups
from kvmhub.services.vm import lifecycle as vms
from kvmhub.validate import check_name

router = APIRouter(tags=["backups"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]


@router.get("/vms/{name}/backups", response_model=list[BackupInfo], dependencies=[VIEWER])
def list_backups(name: Name, hv: Hv,
                 directory: Annotated[str | None, Query(min_length=1, description="only the backups in this "
                                                        "directory on the host")] = None) -> list[BackupInfo]:
    """A VM's backup points, from the directories its checkpoints name (or ``directory``)."""
    return backups.list_backups(hv, name, directory)


@router.post("/vms/{name}/backups", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[ADMIN])
def take_backup(name: Name, options: BackupOptions, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Back up a VM (running or not) into ``directory`` on its host (admin only: a path on the server's host):
    full, or with ``incremental`` what changed since the last backup there. The operation's result is the
    backup point."""
    vms.get(hv, name)
    req = BackupRequest(vm=name, **options.model_dump())

    def work(report: Reporter) -> BackupInfo:
        return backups.backup(hv, req, report=report)

    return accepted(response, ops.submit("backup.create", name, work, vm=name))


@router.post("/backups/restore", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[ADMIN])
def restore_backup(req: RestoreRequest, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Rebuild a shut-off VM's disks from the backups in ``directory`` (up to ``at``, default the latest), or
    with ``as_name`` a new VM beside it. The operation's result is the restored VM."""
    check_name(req.vm, "VM")
    if req.as_name is None:
        visible_vm(hv, caller, req.vm)
        vms.get(hv, req.vm)
    else:
        check_name(req.as_name, "VM")
    vm = req.as_name or req.vm

    def work(report: Reporter) -> VMInfo:
        return vms.show(hv, backups.restore(hv, req, report=report))

    return accepted(response, ops.submit("backup.restore", vm, work, vm=vm))


class BackupDirectory(BaseModel):
    """A backup directory on the server's host."""

    model_config = ConfigDict(extra="forbid")

    directory: str = Field(min_length=1, max_length=4096)


@router.post("/backups/verify", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[ADMIN])
def verify_backups(req: BackupDirectory, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Check every file of a backup directory on the host (admin only): its checksum and ``qemu-img check``. The
    operation's result lists the problems found (empty: all intact)."""

    def work(report: Reporter) -> list[str]:
        return backups.verify(hv, req.directory, report=report)

    return accepted(response, ops.submit("backup.verify", req.directory, work))
