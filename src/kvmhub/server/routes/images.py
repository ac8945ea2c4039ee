"""``/images``: the base images VMs are cloned from; imports (from a URL or media on the host) as operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.models import ImageImportRequest, ImageInfo, OperationInfo
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller
from kvmhub.server.deps import Hv, Ops
from kvmhub.server.routes.common import ACCEPTED, NAME_CHARS, accepted
from kvmhub.server.scope import project_for, visible_volume
from kvmhub.services.storage import images
from kvmhub.services.storage.media import media_path
from kvmhub.validate import check_name

router = APIRouter(prefix="/images", tags=["images"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the image's name")]


@router.get("", response_model=list[ImageInfo], dependencies=[VIEWER])
def list_images(hv: Hv) -> list[ImageInfo]:
    """Every image in the store: format, virtual size, size on disk, the VMs using it."""
    return images.list_images(hv)


@router.get("/{name}", response_model=ImageInfo, dependencies=[VIEWER])
def show_image(name: Name, hv: Hv) -> ImageInfo:
    """One image: format, sizes, checksum, OS, where it came from, the VMs using it."""
    return images.show(hv, name)


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def import_image(req: ImageImportRequest, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Import an image into the store as qcow2: from ``url`` (http/https, fetched by the server's host), or
    from ``media``: a file on the server's host (``path``) or a volume (``volume``: POOL/NAME, e.g. one sent
    with ``PUT /pools/{pool}/volumes/{name}/data``). The source is checked against ``sha256``/``sha512``;
    images pointing at other files are refused; a failed import leaves nothing behind. The image is recorded as
    the project's (``project``, default: the caller's only project, else ``default``)."""
    check_name(req.name, "image")
    req = req.model_copy(update={"project": project_for(caller, req.project)})
    if req.media is not None and req.media.volume is not None:
        visible_volume(hv, caller, req.media.volume)
        media_path(hv, req.media, "media.volume")  # a missing volume is a 404 now, not a failed operation later

    def work(report: Reporter) -> ImageInfo:
        return images.import_image(hv, req, report=report)

    return accepted(response, ops.submit("image.import", req.name, work, project=req.project))


@router.delete("/{name}", status_code=204, dependencies=[OPERATOR])
def remove_image(name: Name, hv: Hv) -> Response:
    """Remove an image and its record (refused with 409 while a VM's disk is backed by it; the VMs are named)."""
    images.remove(hv, name)
    return Response(status_code=204)
