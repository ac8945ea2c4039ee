"""``/vms/{name}/export`` and ``/vms/import``: a VM as one archive on the server host, and back.

The server picks the archive's file (under its state directory, never a path a client names) and gives it in
the operation's result.
"""

from __future__ import annotations

import time
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from kvmhub.models import ExportResult, ImportRequest, OperationInfo, VMInfo
from kvmhub.models.requests_vm import ExportRequest
from kvmhub.ops.paths import private_dir, state_dir
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, Caller, admin_for_host_paths
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.server.scope import project_for, visible_volume
from kvmhub.services.vm import export as vm_export
from kvmhub.services.vm import lifecycle as vms
from kvmhub.validate import check_name

router = APIRouter(prefix="/vms", tags=["exports"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]


def exports_dir() -> FilePath:
    """Where the server writes export archives."""
    return private_dir(state_dir() / "exports")


@router.post("/import", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def import_vm(req: ImportRequest, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Define a VM from an export archive on the server host (``media``: a path or a POOL/VOL); its disks are
    uploaded into ``pool``. It keeps its name, UUID and MACs unless ``as_name`` makes it a copy; it is left
    shut off. The operation's result is the VM. An archive named by its path on the server's host needs an
    admin."""
    admin_for_host_paths(caller, "an archive", req.media.path)
    visible_volume(hv, caller, req.media.volume)
    if req.as_name is not None:
        check_name(req.as_name, "VM")
    req = req.model_copy(update={"project": project_for(caller, req.project)})

    def work(report: Reporter) -> VMInfo:
        return vms.show(hv, vm_export.import_vm(hv, req, report=report))

    return accepted(response, ops.submit("vm.import", req.as_name or str(req.media), work, vm=req.as_name,
                                         project=req.project))


@router.post("/{name}/export", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def export_vm(name: Name, hv: Hv, ops: Ops, response: Response,
              options: Annotated[ExportRequest | None, Body()] = None) -> OperationInfo:
    """Write a shut-off VM (definition, flattened disks, kvmhub's metadata) into one ``.tar.gz`` on the server
    host; the operation's result names the file (import it with ``POST /vms/import``)."""
    vms.get(hv, name)
    compress = (options or ExportRequest()).compress

    def work(report: Reporter) -> ExportResult:
        to = exports_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
        return vm_export.export(hv, name, to, compress=compress, report=report)

    return accepted(response, ops.submit("vm.export", name, work, vm=name))
