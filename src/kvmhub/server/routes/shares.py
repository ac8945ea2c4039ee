"""``/vms/{name}/shares``: a VM's shared folders (host directories seen through virtiofs or 9p)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.models import OperationInfo
from kvmhub.models.share import TAG_PATTERN, ShareAddRequest, ShareChange, ShareInfo
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.services.vm import shares

router = APIRouter(prefix="/vms/{name}/shares", tags=["shares"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Tag = Annotated[str, Path(pattern=TAG_PATTERN, description="the share's mount tag")]


@router.get("", response_model=list[ShareInfo], dependencies=[VIEWER])
def list_shares(name: Name, hv: Hv) -> list[ShareInfo]:
    """A VM's shares: mount tag, host directory, mode, read-only, and whether the running VM has it now."""
    return shares.list_shares(hv, name)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def add_share(name: Name, req: ShareAddRequest, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Share ``source``, a directory on the VM's host under a root the host's admin allows (``shares.roots`` of
    kvmhub's settings file), as ``tag``: plugged in live and mounted at ``/mnt/TAG`` when the VM runs and can take
    it, else in the definition with ``restart`` and its ``reason`` in the result. A directory outside the roots is
    a 400 now, before any operation."""
    shares.check(hv, name, req)

    def work(report: Reporter) -> ShareChange:
        return shares.add(hv, name, req, report=report)

    return accepted(response, ops.submit("share.add", name, work, vm=name))


@router.delete("/{tag}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_share(name: Name, tag: Tag, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Stop sharing: unmounted and unplugged when the running VM has it (virtiofs), always out of the definition."""
    shares.find(hv, name, tag)

    def work(report: Reporter) -> ShareChange:
        return shares.remove(hv, name, tag, report=report)

    return accepted(response, ops.submit("share.rm", name, work, vm=name))
