"""``/pools/{pool}/volumes``: the volumes of a pool; their bytes sent in (``PUT .../data``) and read out."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from kvmhub.models import (
    OperationInfo,
    VolumeCloneRequest,
    VolumeCreateRequest,
    VolumeFormat,
    VolumeInfo,
    VolumeResizeRequest,
)
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, NAME_CHARS, accepted
from kvmhub.server.scope import project_for, visible_volume
from kvmhub.services.storage import volume_streams, volumes

router = APIRouter(prefix="/pools/{pool}/volumes", tags=["volumes"])
Pool = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the pool's name")]
Name = Annotated[str, Path(min_length=1, max_length=255, pattern=NAME_CHARS,
                           description="the volume's name in the pool")]
# request bodies the body limit lets through: their length is bounded by the pool's free space instead
STREAMED_BODIES = re.compile(r"^/api/v1/pools/[^/]+/volumes/[^/]+/data$")
READ_TIMEOUT = 300.0  # a client that sends nothing for this long has its upload abandoned
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")  # what a file name in a header keeps of a volume's name
_BINARY: dict[str, Any] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.get("", response_model=list[VolumeInfo], dependencies=[VIEWER])
def list_volumes(pool: Pool, hv: Hv, caller: Caller) -> list[VolumeInfo]:
    """The volumes of an active pool the caller may see: format, capacity, allocation, backing volume, the VMs
    using each, its project."""
    return volumes.list_volumes(hv, pool, only=caller.projects)


@router.post("", response_model=VolumeInfo, status_code=201, dependencies=[OPERATOR])
def create_volume(pool: Pool, req: VolumeCreateRequest, hv: Hv, response: Response, caller: Caller) -> VolumeInfo:
    """Create an empty volume, or a qcow2 overlay of ``backing`` (POOL/VOL), in ``project`` (default: the
    caller's only project, else ``default``); 403 ``project.quota_exceeded`` past its disk quota."""
    project = project_for(caller, req.project)
    visible_volume(hv, caller, req.backing)
    info = volumes.create_volume(hv, f"{pool}/{req.name}", req.capacity_bytes, fmt=req.format,
                                 backing=req.backing, allocate=req.allocate, project=project)
    response.headers["Location"] = f"/api/v1/pools/{info.pool}/volumes/{info.name}"
    return info


@router.get("/{name}", response_model=VolumeInfo, dependencies=[VIEWER])
def show_volume(pool: Pool, name: Name, hv: Hv) -> VolumeInfo:
    """One volume: format, sizes, path, backing, the VMs using it, the overlays backed by it."""
    return volumes.show_volume(hv, f"{pool}/{name}")


@router.delete("/{name}", status_code=204, dependencies=[OPERATOR])
def remove_volume(pool: Pool, name: Name, hv: Hv) -> Response:
    """Delete a volume (refused with 409 while a VM uses it or another volume is backed by it)."""
    volumes.remove_volume(hv, f"{pool}/{name}")
    return Response(status_code=204)


@router.post("/{name}/clone", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def clone_volume(pool: Pool, name: Name, req: VolumeCloneRequest, hv: Hv, ops: Ops,
                 response: Response, caller: Caller) -> OperationInfo:
    """Copy the volume in full as ``target`` (NAME in this pool, or POOL/NAME), or make a linked clone (a qcow2
    overlay backed by it)."""
    src = f"{pool}/{name}"
    volumes.show_volume(hv, src)  # a missing source is a 404 now, not a failed operation later
    dst = req.target if "/" in req.target else f"{pool}/{req.target}"
    dst_pool, dst_name = volumes.split_ref(dst)
    volumes.check_volume_name(dst_name, dst_pool)
    project = project_for(caller, req.project)

    def work(_report: Reporter) -> VolumeInfo:
        return volumes.clone_volume(hv, src, dst, linked=req.linked, fmt=req.format, project=project)

    return accepted(response, ops.submit("volume.clone", src, work))


@router.post("/{name}/resize", response_model=VolumeInfo, dependencies=[OPERATOR])
def resize_volume(pool: Pool, name: Name, req: VolumeResizeRequest, hv: Hv) -> VolumeInfo:
    """Resize a volume to ``capacity_bytes`` (or grow it by that much with ``grow``); shrinking, which cuts off
    its end, only with ``shrink``."""
    return volumes.resize_volume(hv, f"{pool}/{name}", req.capacity_bytes, grow_by=req.grow, shrink=req.shrink)


@router.put("/{name}/data", response_model=VolumeInfo, status_code=201, dependencies=[OPERATOR],
            openapi_extra={"requestBody": {"required": True, "content": _BINARY}})
async def upload_volume(pool: Pool, name: Name, request: Request, hv: Hv, caller: Caller,
                        format: Annotated[VolumeFormat | None, Query(
                            description="qcow2 or raw (default: read from the header)")] = None,
                        project: Annotated[str | None, Query(
                            max_length=64, description="the volume's project (default: the caller's only "
                            "project, else default)")] = None) -> VolumeInfo:
    """Send a file (an ISO, a qcow2 or raw disk image) as the body into a new volume of the body's length,
    e.g. to import it then with ``POST /images`` and ``media: {volume: "POOL/NAME"}``. The length
    (``Content-Length``, required) must fit the pool's free space; qcow2 headers naming a backing or data file,
    or encrypted ones, are refused before any byte is stored; a body cut short leaves no volume behind."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise HTTPException(411, "send the body's length in Content-Length: it sizes the volume")
    owner = await anyio.to_thread.run_sync(project_for, caller, project)
    loop = asyncio.get_running_loop()
    body = request.stream().__aiter__()

    def next_chunk() -> bytes:
        return asyncio.run_coroutine_threadsafe(_next(body), loop).result(READ_TIMEOUT)

    def upload() -> VolumeInfo:
        return volume_streams.upload_stream(hv, f"{pool}/{name}", volume_streams.Reader(next_chunk), int(declared),
                                            fmt=format, project=owner)

    info = await anyio.to_thread.run_sync(upload)
    return info


async def _next(body: AsyncIterator[bytes]) -> bytes:
    return await anext(body, b"")


@router.get("/{name}/data", response_class=StreamingResponse, dependencies=[VIEWER],
            responses={200: {"description": "the volume's bytes", "content": _BINARY}})
def download_volume(pool: Pool, name: Name, hv: Hv) -> StreamingResponse:
    """The volume's bytes (for a qcow2 volume, its qcow2 file), streamed as they are read."""
    info, chunks = volume_streams.download_stream(hv, f"{pool}/{name}")
    return StreamingResponse(chunks, media_type="application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{_SAFE.sub("_", info.name)}"'})
