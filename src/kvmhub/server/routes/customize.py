"""Offline editing with libguestfs as operations: ``POST /images/{name}/customize`` and ``POST /vms/{name}/edit``
(a disk of a shut-off VM)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.models import OperationInfo
from kvmhub.models.customize import CustomizeRequest, CustomizeResult, DiskEditRequest
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, NAME_CHARS, accepted
from kvmhub.services.storage import customize, images
from kvmhub.services.vm import lifecycle as vms

router = APIRouter(tags=["customize"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS)]


@router.post("/images/{name}/customize", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def customize_image(name: Name, req: CustomizeRequest, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Edit an image offline in one libguestfs pass: ``sysprep``, ``hostname``, ``passwords``, ``ssh_keys``,
    ``files``, ``run``, ``firstboot``, in that order. All edits reach the image or none does; refused (409)
    while VMs are linked clones of it. The result lists each change and what was found in the image."""
    images.get(hv, name)  # a missing image is a 404 now, not a failed operation

    def work(report: Reporter) -> CustomizeResult:
        return customize.customize_image(hv, name, req, report=report)

    return accepted(response, ops.submit("image.customize", name, work))


@router.post("/vms/{name}/edit", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def edit_disk(name: Name, req: DiskEditRequest, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Edit a disk of a shut-off VM offline (``disk``: its target, default the first disk), with the edits of
    ``POST /images/{name}/customize``; refused (409) while the VM runs."""
    customize.check_shut_off(vms.get(hv, name))  # 404 or 409 now, not a failed operation

    def work(report: Reporter) -> CustomizeResult:
        return customize.edit_disk(hv, name, req, report=report)

    return accepted(response, ops.submit("disk.edit", name, work, vm=name))
