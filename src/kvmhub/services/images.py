"""The image store: base images in kvmhub's images pool, from which VM disks are linked clones."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import ImageInfo
from kvmhub.services import pools
from kvmhub.tools import qemu_img
from kvmhub.undo import Undo
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume

SUFFIX = ".qcow2"


def volume_name(image: str) -> str:
    return image + SUFFIX


def _info(vol: hv_storage.Volume, users: list[str]) -> ImageInfo:
    vi = vol.info()
    fmt = xml_volume.volume_from_xml(vol.xml()).format or "qcow2"
    return ImageInfo(
        name=vol.name.removesuffix(SUFFIX),
        pool=vol.pool,
        volume=vol.name,
        path=vi.path,
        format=fmt,
        virtual_bytes=vi.capacity,
        allocation_bytes=vi.allocation,
        used_by=users,
    )


def _users(hv: Hypervisor, path: str) -> list[str]:
    """VMs whose disk volumes in the disks pool have this image as backing file."""
    pool = pools.disks_pool(hv)
    users = []
    for name in pool.volume_names():
        try:
            parsed = xml_volume.volume_from_xml(pool.volume(name).xml())
        except KvmhubError:
            continue
        if parsed.backing_path == path:
            users.append(_owner_of(name))
    return sorted(set(users))


def _owner_of(volume: str) -> str:
    # kvmhub names a VM's disks NAME-disk0.qcow2, NAME-seed.iso; other volumes are shown whole
    for tag in ("-disk", "-seed"):
        if tag in volume:
            return volume.rsplit(tag, 1)[0]
    return volume


def get(hv: Hypervisor, name: str) -> hv_storage.Volume:
    check_name(name, "image")
    pool = pools.images_pool(hv)
    if not pool.has_volume(volume_name(name)):
        raise NotFound(
            f"no image named {name!r}",
            hint="list them: `kvmhub image ls`; build one: `kvmhub image build-tiny`",
        )
    return pool.volume(volume_name(name))


def list_images(hv: Hypervisor) -> list[ImageInfo]:
    pool = pools.images_pool(hv)
    out = []
    for vol_name in sorted(pool.volume_names()):
        if vol_name.endswith(SUFFIX):
            vol = pool.volume(vol_name)
            out.append(_info(vol, _users(hv, vol.path)))
    return out


def show(hv: Hypervisor, name: str) -> ImageInfo:
    vol = get(hv, name)
    return _info(vol, _users(hv, vol.path))


def remove(hv: Hypervisor, name: str) -> None:
    vol = get(hv, name)
    users = _users(hv, vol.path)
    if users:
        raise Conflict(
            f"image {name!r} is in use by: {', '.join(users)}",
            cause="those VMs' disks are linked clones backed by this image",
            hint="remove those VMs first (`kvmhub rm VM`)",
        )
    vol.delete()


def import_file(
    hv: Hypervisor,
    src: Path,
    name: str,
    *,
    fmt: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImageInfo:
    """Import a local qcow2 or raw file as image `name` (converted to qcow2, hostile headers refused)."""
    check_name(name, "image")
    if not src.is_file():
        raise InvalidInput(f"{src} is not a readable file")
    fmt = fmt or qemu_img.sniff_format(src)
    if fmt not in ("qcow2", "raw"):
        raise InvalidInput(
            f"{src} is {fmt}; this import takes qcow2 or raw files",
            hint=f"convert it: `qemu-img convert -f {fmt} -O qcow2 {src} out.qcow2`",
        )
    qemu_img.check_safe(src, fmt)
    pool = pools.images_pool(hv)
    vol_name = volume_name(name)
    if pool.has_volume(vol_name):
        raise Conflict(f"an image named {name!r} already exists", hint=f"`kvmhub image rm {name}` first")
    with tempfile.TemporaryDirectory(prefix="kvmhub-import-") as tmp, Undo() as undo:
        upload_path = src
        if fmt != "qcow2":
            upload_path = Path(tmp) / "converted.qcow2"
            if progress:
                progress("converting to qcow2", 0, 0)
            qemu_img.convert(src, fmt, upload_path)
        length = os.path.getsize(upload_path)
        # the uploaded bytes replace the file whole; libvirt re-reads the qcow2 header on refresh
        xml = xml_volume.volume_xml(vol_name, length, "raw", None, None)
        undo.add(f"delete volume {vol_name}", lambda: _delete_if_present(pool, vol_name))
        vol = pool.create_volume(xml, what=f"creating volume {vol_name}")
        with open(upload_path, "rb") as fh:
            vol.upload(fh, length, (lambda n: progress("uploading", n, length)) if progress else None)
        pool.refresh()
        undo.success()
    return _info(pool.volume(vol_name), [])


def _delete_if_present(pool: hv_storage.Pool, vol_name: str) -> None:
    if pool.has_volume(vol_name):
        pool.volume(vol_name).delete()
