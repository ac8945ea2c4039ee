"""``/networks``: libvirt networks with DHCP, their state, and their leases and static reservations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from kvmhub.models import LeaseRequest, NetworkCreateRequest
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv
from kvmhub.server.routes.common import NAME_CHARS
from kvmhub.server.scope import project_for, visible_vm
from kvmhub.services.network import leases, networks
from kvmhub.services.network.leases import LeaseInfo
from kvmhub.services.network.networks import NetworkInfo

router = APIRouter(prefix="/networks", tags=["networks"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the network's name")]
Which = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS,
                            description="the reservation's MAC, IP or host name")]


@router.get("", response_model=list[NetworkInfo], dependencies=[VIEWER])
def list_networks(hv: Hv, caller: Caller) -> list[NetworkInfo]:
    """Every network of the caller's projects: state, mode, subnet, bridge, autostart, the VMs on it, its
    project."""
    return networks.list_networks(hv, only=caller.projects)


@router.post("", response_model=NetworkInfo, status_code=201, dependencies=[OPERATOR])
def create_network(req: NetworkCreateRequest, hv: Hv, response: Response, caller: Caller) -> NetworkInfo:
    """Define and start a network (and mark it autostart unless ``autostart`` is false) in ``project`` (none:
    the caller's only project, else default); refused with 403 ``project.quota_exceeded`` past its
    ``max_networks``."""
    info = networks.create(hv, req.name, mode=req.mode, subnet=req.subnet, subnet6=req.subnet6,
                           dhcp_range=req.dhcp_range, domain=req.domain, bridge=req.bridge, dev=req.dev,
                           autostart=req.autostart, project=project_for(caller, req.project))
    response.headers["Location"] = f"/api/v1/networks/{info.name}"
    return info


@router.get("/{name}", response_model=NetworkInfo, dependencies=[VIEWER])
def show_network(name: Name, hv: Hv) -> NetworkInfo:
    """One network."""
    return networks.show(hv, name)


@router.delete("/{name}", status_code=204, dependencies=[OPERATOR])
def remove_network(name: Name, hv: Hv,
                   force: Annotated[bool, Query(description="remove it even though VMs have NICs on it")] = False
                   ) -> Response:
    """Stop and remove a network (refused with 409 while VMs have NICs on it, unless ``force``)."""
    networks.remove(hv, name, force=force)
    return Response(status_code=204)


@router.post("/{name}/start", response_model=NetworkInfo, dependencies=[OPERATOR])
def start_network(name: Name, hv: Hv) -> NetworkInfo:
    """Start a network (409 when it is active already)."""
    networks.start(hv, name)
    return networks.show(hv, name)


@router.post("/{name}/stop", response_model=NetworkInfo, dependencies=[OPERATOR])
def stop_network(name: Name, hv: Hv) -> NetworkInfo:
    """Stop a network: its VMs lose connectivity until it starts again (409 when it is not active)."""
    networks.stop(hv, name)
    return networks.show(hv, name)


@router.post("/{name}/autostart", response_model=NetworkInfo, dependencies=[OPERATOR])
def autostart_network(name: Name, hv: Hv,
                      enabled: Annotated[bool, Query(description="start it with the host")] = True) -> NetworkInfo:
    """Start the network with the host (or not, with ``enabled=false``)."""
    networks.set_autostart(hv, name, enabled)
    return networks.show(hv, name)


@router.get("/{name}/leases", response_model=list[LeaseInfo], dependencies=[VIEWER])
def list_leases(name: Name, hv: Hv) -> list[LeaseInfo]:
    """A network's static reservations and dynamic DHCP leases."""
    return leases.list_leases(hv, name)


@router.post("/{name}/leases", response_model=LeaseInfo, status_code=201, dependencies=[OPERATOR])
def add_lease(name: Name, req: LeaseRequest, hv: Hv, caller: Caller) -> LeaseInfo:
    """Reserve ``ip`` for VM ``vm``'s NIC on this network (applied live; the guest takes it at its next DHCP
    request)."""
    visible_vm(hv, caller, req.vm)
    return leases.reserve_for_vm(hv, name, req.vm, req.ip)


@router.delete("/{name}/leases/{which}", response_model=list[str], dependencies=[OPERATOR])
def remove_lease(name: Name, which: Which, hv: Hv,
                 force: Annotated[bool, Query(description="remove it even though a VM with that MAC exists")]
                 = False) -> list[str]:
    """Remove a static reservation (by MAC, IP or host name) and its DNS entry; answers what was removed.
    Refused with 409 while a VM with its MAC exists, unless ``force``."""
    return leases.remove_reservation(hv, name, which, force=force)
