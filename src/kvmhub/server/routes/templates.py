"""``/templates``: warm templates (list, show, make from a running VM, remove), an admin's: a template holds a
VM's memory. VMs are made from one by ``POST /vms`` with ``template``, in the project of the VM it was made from."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.models import OperationInfo
from kvmhub.models.template import TemplateCreateRequest, TemplateInfo
from kvmhub.reporting import Reporter
from kvmhub.server.auth import ADMIN
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.services.templates import make, store
from kvmhub.services.vm import lifecycle as vms
from kvmhub.validate import check_name

router = APIRouter(prefix="/templates", tags=["templates"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the template's name")]


@router.get("", response_model=list[TemplateInfo], dependencies=[ADMIN])
def list_templates(hv: Hv) -> list[TemplateInfo]:
    """Every template on the host, with the sizes of its state and base and the VMs made from it."""
    return store.list_templates(hv)


@router.get("/{name}", response_model=TemplateInfo, dependencies=[ADMIN])
def show_template(name: Name, hv: Hv) -> TemplateInfo:
    """One template."""
    return store.show(hv, name)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[ADMIN])
def create_template(req: TemplateCreateRequest, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Make a template from a running VM (admin: a template is the host's, shared by every project). The VM's
    memory is saved and its disk frozen; it is left shut off on an overlay. The operation's result is the
    template."""
    check_name(req.name, "template")
    store.require_local(hv)
    vms.get(hv, req.source)  # a missing VM is a 404 now

    def work(report: Reporter) -> TemplateInfo:
        return make.create(hv, req, report=report)

    return accepted(response, ops.submit("template.create", req.name, work, vm=req.source))


@router.delete("/{name}", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[ADMIN])
def remove_template(name: Name, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Remove a template: its state, record and base (409 while VMs sit on its base). The result names what
    was removed."""
    store.get(hv, name)

    def work(report: Reporter) -> list[str]:
        return make.remove(hv, name, report=report)

    return accepted(response, ops.submit("template.rm", name, work))
