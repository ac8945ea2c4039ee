"""``/vms/{name}/forwards``: host ports forwarded to a VM's ports (kept with the VM, re-applied when it starts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from kvmhub.models import PortForward
from kvmhub.server.auth import OPERATOR, VIEWER
from kvmhub.server.deps import Hv
from kvmhub.server.routes.common import NAME_CHARS
from kvmhub.services.network import forwards

router = APIRouter(prefix="/vms/{name}/forwards", tags=["forwards"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the VM's name")]
Which = Annotated[str, Path(pattern=r"^\d{1,5}(/(tcp|udp))?$", description="the host port: 8080 or 8080/udp")]


@router.get("", response_model=list[PortForward], dependencies=[VIEWER])
def list_forwards(name: Name, hv: Hv) -> list[PortForward]:
    """The VM's port forwards."""
    return forwards.list_forwards(hv, name).get(name, [])


@router.post("", response_model=PortForward, status_code=201, dependencies=[OPERATOR])
def add_forward(name: Name, req: PortForward, hv: Hv) -> PortForward:
    """Forward ``host_port`` (on ``host_ip``, or every address of the host) to the VM's ``guest_port``; applied
    now as firewall rules on the VM's host (503 when the server manages a remote host)."""
    return forwards.add(hv, name, f"{req.host_port}:{req.guest_port}/{req.proto}", req.host_ip)


@router.delete("/{which}", response_model=PortForward, dependencies=[OPERATOR])
def remove_forward(name: Name, which: Which, hv: Hv) -> PortForward:
    """Remove the forward of a host port; answers the forward removed."""
    return forwards.remove(hv, name, which)
