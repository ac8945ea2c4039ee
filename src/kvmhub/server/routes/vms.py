"""``/vms``: list and show VMs (also those other tools made); state changes and removal as operations."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models import OperationInfo, VMInfo
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.services.vm import lifecycle as vms
from kvmhub.services.vm import remove as vm_remove
from kvmhub.validate import check_name

router = APIRouter(prefix="/vms", tags=["vms"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Action = Literal["start", "stop", "kill", "reboot", "pause", "resume"]


class StopOptions(BaseModel):
    """How ``stop`` waits: the ACPI power button, then (with ``force``) a kill after ``timeout`` seconds."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False
    timeout: float = Field(default=60.0, gt=0, le=3600)


@router.get("", response_model=list[VMInfo], dependencies=[VIEWER])
def list_vms(hv: Hv) -> list[VMInfo]:
    """Every VM on the host, with its state and addresses."""
    return vms.list_vms(hv)


@router.get("/{name}", response_model=VMInfo, dependencies=[VIEWER])
def show_vm(name: Name, hv: Hv) -> VMInfo:
    """One VM in full: disks, NICs, limits, consoles, boot."""
    return vms.show(hv, name)


@router.post("/{name}/{action}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def change_state(name: Name, action: Action, hv: Hv, ops: Ops, response: Response, caller: Caller,
                 options: Annotated[StopOptions | None, Body()] = None) -> OperationInfo:
    """Start, stop (ACPI; ``force`` kills after ``timeout``), kill, reboot, pause or resume a VM."""
    check_name(name, "VM")
    vms.get(hv, name)  # a missing VM is a 404 now, not a failed operation later
    stop = options or StopOptions()

    def work(report: Reporter) -> VMInfo:
        if action == "stop":
            vms.stop(hv, name, force=stop.force, timeout=stop.timeout, report=report)
        else:
            getattr(vms, action)(hv, name, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit(f"vm.{action}", name, work, vm=name, requested_by=caller.name))


@router.delete("/{name}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_vm(name: Name, hv: Hv, ops: Ops, response: Response, caller: Caller,
              keep_disks: Annotated[bool, Query(description="keep the VM's disk and seed volumes")] = False
              ) -> OperationInfo:
    """Remove a VM: kill it if running, undefine it, delete the volumes kvmhub made for it (never the image)."""
    vms.get(hv, name)

    def work(report: Reporter) -> list[str]:
        return vm_remove.remove(hv, name, keep_disks=keep_disks, report=report)

    return accepted(response, ops.submit("vm.rm", name, work, vm=name, requested_by=caller.name))
