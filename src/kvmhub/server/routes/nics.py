"""``/vms/{name}/nics``: list a VM's network cards; add and remove them (hot-plugged when it runs)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict

from kvmhub.models import NICSpec, OperationInfo
from kvmhub.models.nic import NICAddRequest, NICChange
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.server.scope import visible_network
from kvmhub.services.network import nics
from kvmhub.services.vm import lifecycle as vms

router = APIRouter(prefix="/vms/{name}/nics", tags=["nics"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Mac = Annotated[str, Path(pattern=r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$", description="the NIC's MAC address")]


class LinkChange(BaseModel):
    """A NIC's new link state: ``up`` plugs the virtual cable, ``down`` unplugs it."""

    model_config = ConfigDict(extra="forbid")

    link: Literal["up", "down"]


@router.get("", response_model=list[NICSpec], dependencies=[VIEWER])
def list_nics(name: Name, hv: Hv) -> list[NICSpec]:
    """A VM's NICs: network or bridge, MAC, model, link state, firewall."""
    return nics.list_nics(hv, name)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def add_nic(name: Name, req: NICAddRequest, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Add a NIC on ``network`` with an address reserved for it (``ip``, or the next free one): live when the
    VM runs, always persisted. The result is the NIC and whether it was live. Another project's network answers
    404 as a missing one."""
    vms.get(hv, name)
    visible_network(hv, caller, req.network)

    def work(report: Reporter) -> NICChange:
        report.phase(f"adding a NIC on {req.network}")
        nic, live = nics.add(hv, name, req.network, model=req.model, ip=req.ip)
        return NICChange(nic=nic, live=live)

    return accepted(response, ops.submit("nic.add", name, work, vm=name))


@router.delete("/{mac}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_nic(name: Name, mac: Mac, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Remove a NIC and release its address. The result is the NIC and whether it was live."""
    nics.find(hv, name, mac)  # a missing VM or NIC is a 404 now

    def work(report: Reporter) -> NICChange:
        report.phase(f"removing NIC {mac}")
        gone, live = nics.remove(hv, name, mac)
        return NICChange(nic=gone, live=live)

    return accepted(response, ops.submit("nic.rm", name, work, vm=name))


@router.patch("/{mac}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
              dependencies=[OPERATOR])
def change_nic(name: Name, mac: Mac, req: LinkChange, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Plug or unplug a NIC's virtual cable (live when the VM runs, always persisted). The result is the NIC and
    whether it was live."""
    nics.find(hv, name, mac)

    def work(report: Reporter) -> NICChange:
        report.phase(f"link of NIC {mac} {req.link}")
        changed, live = nics.set_link(hv, name, mac, req.link == "up")
        return NICChange(nic=changed, live=live)

    return accepted(response, ops.submit("nic.set", name, work, vm=name))
