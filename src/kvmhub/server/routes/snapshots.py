"""``/vms/{name}/snapshots``: list, take, revert to and remove a VM's snapshots (the changes as operations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from kvmhub.models import OperationInfo, SnapshotRequest, VMInfo
from kvmhub.models.snapshot import SnapshotInfo, SnapshotOptions
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.services.snapshots import snapshots
from kvmhub.services.vm import lifecycle as vms

router = APIRouter(prefix="/vms/{name}/snapshots", tags=["snapshots"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
Snap = Annotated[str, Path(min_length=1, max_length=64, description="the snapshot's name")]


@router.get("", response_model=list[SnapshotInfo], dependencies=[VIEWER])
def list_snapshots(name: Name, hv: Hv) -> list[SnapshotInfo]:
    """A VM's snapshots, parents before their children; ``current`` marks the one the VM runs from."""
    return snapshots.list_snapshots(hv, name)


@router.get("/{snap}", response_model=SnapshotInfo, dependencies=[VIEWER])
def show_snapshot(name: Name, snap: Snap, hv: Hv) -> SnapshotInfo:
    """One snapshot: kind, memory, disks, parent and children."""
    return snapshots.show(hv, name, snap)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def take_snapshot(name: Name, options: SnapshotOptions, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Take a snapshot: of a running VM with its memory unless ``disk_only`` (external, disks only); of a
    shut-off VM internal. The operation's result is the snapshot."""
    vms.get(hv, name)
    req = SnapshotRequest(vm=name, **options.model_dump())

    def work(report: Reporter) -> SnapshotInfo:
        return snapshots.create(hv, req, report=report)

    return accepted(response, ops.submit("snapshot.create", name, work, vm=name))


@router.post("/{snap}/revert", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def revert_snapshot(name: Name, snap: Snap, hv: Hv, ops: Ops, response: Response,
                    running: Annotated[bool, Query(description="leave the VM running after the revert")] = False,
                    paused: Annotated[bool, Query(description="leave the VM paused after the revert")] = False,
                    ) -> OperationInfo:
    """Bring a VM back to a snapshot; its current state is discarded. The operation's result is the VM."""
    snapshots.show(hv, name, snap)  # a missing VM or snapshot is a 404 now

    def work(report: Reporter) -> VMInfo:
        snapshots.revert(hv, name, snap, running=running, paused=paused, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit("snapshot.revert", name, work, vm=name))


@router.delete("/{snap}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_snapshot(name: Name, snap: Snap, hv: Hv, ops: Ops, response: Response,
                    children: Annotated[bool, Query(description="remove its descendants too")] = False,
                    keep_children: Annotated[bool, Query(
                        description="remove only it; its children hang from its parent")] = False,
                    ) -> OperationInfo:
    """Remove a snapshot (external ones are merged into their base). The result names the snapshots removed."""
    snapshots.show(hv, name, snap)

    def work(report: Reporter) -> list[str]:
        return snapshots.remove(hv, name, snap, children=children, keep_children=keep_children, report=report)

    return accepted(response, ops.submit("snapshot.rm", name, work, vm=name))
