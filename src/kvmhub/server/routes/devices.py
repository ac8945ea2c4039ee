"""``/hosts/local/devices`` and ``/vms/{name}/devices``: the host's PCI, USB and mediated devices, and the ones
given to a VM (attached and detached, live when it runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.errors import Conflict
from kvmhub.models import OperationInfo
from kvmhub.models.device import DEVICE_PATTERN, DeviceAttachRequest, DeviceChange, HostDevice
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.services import projects
from kvmhub.services.host import devices, passthrough
from kvmhub.services.vm import lifecycle as vms

router = APIRouter(tags=["devices"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Device = Annotated[str, Path(pattern=DEVICE_PATTERN, description="PCI address, VENDOR:PRODUCT or mediated UUID")]
HIDDEN = "(another project's VM)"


@router.get("/hosts/local/devices", response_model=list[HostDevice], dependencies=[VIEWER])
def list_host_devices(hv: Hv, caller: Caller) -> list[HostDevice]:
    """The host's PCI devices (address, vendor and product, class, driver, IOMMU group and whether it is
    viable), USB devices and mediated devices; for each, the VM it is given to and what the host uses it for.
    A VM of a project the caller is not in is not named."""
    found = devices.list_devices(hv)
    if caller.projects is not None:
        for dev in found:
            if dev.vm is not None and not caller.sees(projects.vm_project(hv, dev.vm)):
                dev.vm = HIDDEN
    return found


@router.post("/vms/{name}/devices", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def attach_device(name: Name, req: DeviceAttachRequest, hv: Hv, ops: Ops, response: Response,
                  caller: Caller) -> OperationInfo:
    """Give the host device ``device`` to the VM (managed: libvirt binds a PCI device to VFIO), live when it
    runs, always persisted. Refused now, with nothing changed, when the host has no such device (404), it is
    given to a VM or the host uses it (409), the IOMMU is off (503 ``host.iommu_off``) or its group is not
    viable (409)."""
    vms.get(hv, name)
    all_nodes = devices.nodes(hv)
    dev, given = devices.resolve(all_nodes, req.device), devices.given(hv)
    owner = devices.user_of(dev, given)
    if owner not in (None, name) and not caller.sees(projects.vm_project(hv, owner)):
        raise Conflict(f"{passthrough.dev_id(dev)} is given to {HIDDEN}", code="device.in_use",
                       cause="a host device is given to one VM at a time")
    passthrough.check_passable(hv, name, dev, all_nodes, given)

    def work(report: Reporter) -> DeviceChange:
        return passthrough.attach(hv, name, req.device, report=report)

    return accepted(response, ops.submit("device.attach", name, work, vm=name))


@router.delete("/vms/{name}/devices/{device}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def detach_device(name: Name, device: Device, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Take the host device back from the VM (live when it runs, always persisted)."""
    passthrough.given_to_vm(hv, name, device)

    def work(report: Reporter) -> DeviceChange:
        return passthrough.detach(hv, name, device, report=report)

    return accepted(response, ops.submit("device.detach", name, work, vm=name))
