"""``/pools``: storage pools, where volumes (VM disks, images) live; creation and removal as operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from kvmhub.models import OperationInfo, PoolInfo, PoolSpec
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, NAME_CHARS, accepted
from kvmhub.services.storage import pools
from kvmhub.validate import check_name

router = APIRouter(prefix="/pools", tags=["pools"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the pool's name")]


@router.get("", response_model=list[PoolInfo], dependencies=[VIEWER])
def list_pools(hv: Hv) -> list[PoolInfo]:
    """Every pool: type, state, autostart, sizes, path or source."""
    return pools.list_pools(hv)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def create_pool(spec: PoolSpec, hv: Hv, ops: Ops, response: Response) -> OperationInfo:
    """Define, build, start and autostart a pool; a step that fails takes back the ones before it."""
    check_name(spec.name, "pool")

    def work(report: Reporter) -> PoolInfo:
        return pools.create_pool(hv, spec, report=report)

    return accepted(response, ops.submit("pool.create", spec.name, work))


@router.get("/{name}", response_model=PoolInfo, dependencies=[VIEWER])
def show_pool(name: Name, hv: Hv) -> PoolInfo:
    """One pool, with its volume count and the VMs using its volumes."""
    return pools.show_pool(hv, name)


@router.delete("/{name}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_pool(name: Name, hv: Hv, ops: Ops, response: Response,
                delete_data: Annotated[bool, Query(
                    description="also delete its volumes, and its directory if kvmhub made it")] = False,
                ) -> OperationInfo:
    """Remove a pool (the operation fails while any VM has a disk in it); its data stays unless
    ``delete_data``. The result lists what was removed and what was kept."""
    pools.show_pool(hv, name)  # a missing pool is a 404 now, not a failed operation later

    def work(report: Reporter) -> list[str]:
        return pools.remove_pool(hv, name, delete_data=delete_data, report=report)

    return accepted(response, ops.submit("pool.rm", name, work))


@router.post("/{name}/start", response_model=PoolInfo, dependencies=[OPERATOR])
def start_pool(name: Name, hv: Hv) -> PoolInfo:
    """Start (activate) a pool (409 when it is active already)."""
    return pools.start_pool(hv, name)


@router.post("/{name}/stop", response_model=PoolInfo, dependencies=[OPERATOR])
def stop_pool(name: Name, hv: Hv) -> PoolInfo:
    """Stop (deactivate) a pool; refused with 409 while a running VM has a disk in it."""
    pools.stop_pool(hv, name)
    return pools.show_pool(hv, name)


@router.post("/{name}/refresh", response_model=PoolInfo, dependencies=[OPERATOR])
def refresh_pool(name: Name, hv: Hv) -> PoolInfo:
    """Rescan a pool's storage for volumes added or removed behind libvirt's back."""
    return pools.refresh_pool(hv, name)
