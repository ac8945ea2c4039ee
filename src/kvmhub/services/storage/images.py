"""The image store: base images in kvmhub's images pool, from which VM disks are linked clones.

Each image is a qcow2 volume ``NAME.qcow2``; what kvmhub learnt when importing it (source, SHA-256,
original format, OS variant, time) is its record in kvmhub's state database (``image_records``), keyed by host,
pool and volume: the pool holds images only.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast, get_args

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, NotFound
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import storage as hv_storage
from kvmhub.models import ImageInfo
from kvmhub.models.documents import HostMedia
from kvmhub.models.image import ImageFormat, ImageImportRequest, ImageMeta
from kvmhub.models.operation import Recovery
from kvmhub.ops.actions import Context
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.storage import image_records
from kvmhub.services.storage import usage as storage_usage
from kvmhub.services.storage.media import media_path
from kvmhub.services.vm import osinfo
from kvmhub.tools import download, qemu_img
from kvmhub.tools.download import Checksum, Progress
from kvmhub.tools.filecopy import copy_file
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SUFFIX = ".qcow2"
# a file named like this must carry that format's header, else it lies about its format
_SUFFIX_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".vmdk": "vmdk", ".vdi": "vdi",
                   ".vhdx": "vhdx", ".vhd": "vpc"}



def volume_name(image: str) -> str:
    return image + SUFFIX


def _records(pool: hv_storage.Pool, names: set[str]) -> dict[str, image_records.Record]:
    """The records of the images in ``pool`` by volume name, once earlier versions' JSON records are adopted."""
    left = image_records.adopt_legacy(pool, names, SUFFIX) if image_records.has_legacy(names) else {}
    return {**image_records.in_pool(pool.hv.uri, pool.name), **left}


def _meta(records: dict[str, image_records.Record], vol: hv_storage.Volume) -> ImageMeta | None:
    """The image's record; None when it has none (copied into the pool by hand) or it was another volume's."""
    record = records.get(vol.name)
    return record.meta if record is not None and record.matches(vol.key) else None


def _info(vol: hv_storage.Volume, users: list[str], meta: ImageMeta | None = None) -> ImageInfo:
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
        os=meta.os if meta else None,
        source=meta.source if meta else None,
        sha256=meta.sha256 if meta else None,
        checksum_verified=meta.checksum_verified if meta else None,
        original_format=meta.original_format if meta else None,
        imported=meta.imported if meta else None,
        project=meta.project if meta else None,
    )


def _users(usage: storage_usage.Usage, vol: hv_storage.Volume) -> list[str]:
    """VMs whose disk chain includes the image: linked clones in any pool, also through frozen bases."""
    return usage.vms_using(vol.pool, vol.name, vol.path)


def get(hv: Hypervisor, name: str) -> hv_storage.Volume:
    """The image's volume; NotFound when there is no such image, Conflict while its import is unfinished."""
    return lookup(hv, name)[0]


def lookup(hv: Hypervisor, name: str) -> tuple[hv_storage.Volume, ImageMeta | None]:
    """The image's volume and its record (None for a volume copied in by hand); refusals as :func:`get`."""
    check_name(name, "image")
    pool = pools.images_pool(hv)
    names = set(pool.volume_names())
    if volume_name(name) not in names:
        raise NotFound(
            f"no image named {name!r}",
            hint="list them: {cmd:image ls}; import one: {cmd:image import SRC --name N}", code="image.not_found",
        )
    vol = pool.volume(volume_name(name))
    meta = _meta(_records(pool, names), vol)
    if meta is not None and not meta.complete:
        raise Conflict(f"image {name!r} is not complete: its import is running or was interrupted",
                       cause="an image is usable only once its import has stored and checked every byte",
                       hint="wait for the import to finish; after an interrupted one, {cmd:repair --yes} "
                            "removes what it left", code="image.incomplete")
    return vol, meta


def list_images(hv: Hypervisor) -> list[ImageInfo]:
    """Every image in the store."""
    pool = pools.images_pool(hv)
    names = set(pool.volume_names())
    records = _records(pool, names)
    usage = storage_usage.scan(hv)  # once for all images
    out = []
    for vol_name in sorted(names):
        if vol_name.endswith(SUFFIX):
            vol = pool.volume(vol_name)
            out.append(_info(vol, _users(usage, vol), _meta(records, vol)))
    return out



def show(hv: Hypervisor, name: str) -> ImageInfo:
    """One image: format, sizes, its import record and the VMs whose disks it backs."""
    vol, meta = lookup(hv, name)
    return _info(vol, _users(storage_usage.scan(hv), vol), meta)


def remove(hv: Hypervisor, name: str) -> None:
    """Delete an image and its record; Conflict while any VM's disk chain or any volume is backed by it.

    Holds the image's lock: a create cloning it finishes first, and one that starts meanwhile waits and then
    finds no image. Once begun, a removal is finished (by the next kvmhub command after a crash).
    """
    check_name(name, "image")
    with Operation(hv, "image.rm", name, locks=[LockSpec("image", name)], recovery=Recovery.FORWARD) as op:
        _plan_remove(hv, name, op)
        op.run_forward(Context(hv, host_root()))
        op.success()


def _plan_remove(hv: Hypervisor, name: str, op: Operation) -> None:
    vol = get(hv, name)
    path = vol.path
    users = _users(storage_usage.scan(hv), vol)
    overlays = storage_usage.overlays_of(hv, path)
    if users:
        raise Conflict(
            f"image {name!r} is in use by: {', '.join(users)}",
            cause="those VMs' disks are linked clones backed by this image"
                  + (f" (through {', '.join(overlays)})" if overlays else ""),
            hint="remove those VMs first ({cmd:rm VM})", code="image.in_use",
        )
    if overlays:
        raise Conflict(
            f"image {name!r} backs the volumes {', '.join(overlays)}",
            cause="those volumes are linked clones (qcow2 overlays) whose data partly lives in this image",
            hint=f"remove them first ({{cmd:vol rm {overlays[0]}}}), or make them full copies "
                 "({cmd:vol clone POOL/VOL COPY}) and remove the linked ones", code="image.in_use",
        )
    pool = pools.images_pool(hv)
    op.forward(f"delete image {name}", undo_actions.delete_volume(pool.name, vol.name, path))
    if (record := image_records.get(hv.uri, pool.name, vol.name)) is not None:
        op.forward(f"delete the record of image {name}",
                   undo_actions.forget_image_record(pool.name, vol.name, record.writer))


def image_format(fmt: str | None) -> ImageFormat | None:
    """``fmt`` as an image import format; raises InvalidInput naming the formats kvmhub imports."""
    if fmt is None:
        return None
    if fmt not in get_args(ImageFormat):
        raise InvalidInput(f"unknown image format {fmt!r}", hint=f"one of: {', '.join(qemu_img.KNOWN_FORMATS)}")
    return cast(ImageFormat, fmt)


def import_file(
    hv: Hypervisor,
    src: Path,
    name: str,
    *,
    fmt: str | None = None,
    report: Reporter = QUIET,
) -> ImageInfo:
    """Import the image file ``src`` on this host as image `name` (see :func:`import_image`)."""
    req = ImageImportRequest(name=name, media=HostMedia(path=str(src)), format=image_format(fmt))
    return import_image(hv, req, report=report)


def import_image(
    hv: Hypervisor,
    req: ImageImportRequest,
    *,
    report: Reporter = QUIET,
) -> ImageInfo:
    """Import ``req.url`` or ``req.media`` (a file on this host, or a volume) as image ``req.name``, as qcow2.

    A local file is opened once and every step reads that descriptor; anything else is streamed into a
    temporary file (decompressing xz/gzip). The source is checked against ``req.sha256`` or ``req.sha512``,
    refused when hostile (backing or data files, VMDK descriptors, a header that disagrees with its name or
    ``req.format``), converted with qemu-img when not qcow2, stored in the images pool (and refused if
    libvirt then sees a backing file) with its record. Any failure, Ctrl-C or ``report.cancel`` (honoured
    within a transfer too) leaves neither a volume nor a temporary file.
    """
    name, fmt, os_variant = req.name, req.format, req.os
    if req.sha256 and req.sha512:
        raise InvalidInput("give {opt:sha256} or {opt:sha512}, not both", cause="one checksum is checked per import",
                           hint="keep the one the publisher signs (usually {opt:sha256})")
    checksum = (Checksum.parse("sha256", req.sha256) if req.sha256
                else Checksum.parse("sha512", req.sha512) if req.sha512 else None)
    src = req.url if req.url is not None else str(media_path(hv, req.media, "image")) if req.media else ""
    check_name(name, "image")
    project = projects.resolve(req.project)
    os_id = _resolve_os(os_variant, report)
    pool = pools.images_pool(hv)
    vol_name = volume_name(name)
    with tempfile.TemporaryDirectory(prefix="kvmhub-import-") as tmp, \
            Operation(hv, "image.import", name, locks=[LockSpec("image", name)], report=report) as op:
        progress = _journalled(op)
        if pool.has_volume(vol_name):  # checked under the lock: of two imports of one name, one wins
            raise Conflict(f"an image named {name!r} already exists", hint=f"{{cmd:image rm {name}}} first",
                           code="name.taken")
        started = datetime.now(UTC).replace(microsecond=0)
        # an earlier version's record of an image removed behind kvmhub's back: never to be adopted for this one
        _delete_if_present(pool, image_records.legacy_name(name))
        op.add(f"delete the record of image {name}", undo_actions.forget_image_record(pool.name, vol_name, op.id))
        image_records.put(hv.uri, pool.name, vol_name, ImageMeta(source=src, sha256="", original_format="",
                                                                 imported=started, complete=False),
                          key=None, writer=op.id)
        faults.point("import-record")
        with download.fetch(src, Path(tmp), expected=checksum, progress=progress) as fetched:
            # every step reads the one descriptor fetch opened: what is checked is what is stored
            src_fmt = _format_of(fetched, fmt)
            virtual = int(qemu_img.check_safe(fetched.fd, src_fmt, label=fetched.source).get("virtual-size") or 0)
            op.add(f"delete volume {vol_name}", undo_actions.delete_volume(pool.name, vol_name))
            if src_fmt == "qcow2":
                _store_qcow2(pool, vol_name, fetched, progress)
            else:
                _convert_into(pool, vol_name, fetched, src_fmt, Path(tmp), virtual, progress)
            sha256 = fetched.sha256()
        _check_stored(pool, vol_name, fetched.source)
        meta = ImageMeta(
            source=fetched.source,
            sha256=sha256,
            checksum_verified=checksum.algorithm if checksum else None,
            original_format=src_fmt,
            compression=fetched.compression,
            os=os_id,
            imported=datetime.now(UTC).replace(microsecond=0),
            project=project,
        )
        op.phase("record")
        pool.refresh()
        stored = pool.volume(vol_name)
        # complete: from here on the image is usable
        image_records.put(hv.uri, pool.name, vol_name, meta, key=stored.key, writer=op.id)
        faults.point("import-done")
        info = _info(stored, [], meta)
        op.success()
    return info


def _journalled(op: Operation) -> Progress:
    """Transfer reports into the operation (journal, reporter, cancel check); an unknown total counts as done."""
    def progress(what: str, done: int, total: int | None) -> None:
        op.progress(what, done, total if total is not None else done)
    return progress


def _resolve_os(variant: str | None, report: Reporter) -> str | None:
    if variant is None:
        return None
    profile = osinfo.resolve(variant)
    if profile.note:
        report.note(profile.note)
    return profile.id


def _format_of(fetched: download.Fetched, fmt: str | None) -> str:
    """The format to read the source as: `fmt` when given, else its header's; refuses a name that lies."""
    detected = qemu_img.sniff_format(fetched.fd)
    if fmt is not None:
        return fmt
    suffix = Path(fetched.name).suffix.lower()
    named = _SUFFIX_FORMATS.get(suffix)
    if named is not None and named != detected and detected in qemu_img.KNOWN_FORMATS:
        raise InvalidInput(
            f"{fetched.source} is named {suffix} but its header says {detected}",
            cause="the file lies about its format",
            hint=f"rename it, or pass {{opt:format}} {detected} if that is what it is",
        )
    return detected


def _storing(progress: Progress | None, phase: str) -> Callable[[int, int], None]:
    """A progress report for the copy into the pool (with the fault point tests interrupt it at)."""
    def report(done: int, total: int) -> None:
        if progress:
            progress(phase, done, total)
        if done:
            faults.point("import-store")

    return report


def _store_qcow2(pool: hv_storage.Pool, vol_name: str, fetched: download.Fetched, progress: Progress | None) -> None:
    """Put a qcow2 file into the pool as is: a kernel copy when the host's files are visible here, else upload."""
    vol = pool.create_volume(xml_volume.volume_xml(vol_name, 0, "raw", None, None),
                             what=f"creating volume {vol_name}")
    local = _local_file(pool, vol)
    if local is not None:
        copy_file(fetched.fd, local, _storing(progress, "copying into the image store"), what="the images pool",
                  hint="free space in the pool's directory ({cmd:image ls}, {cmd:image rm})",
                  label=fetched.source)
        return
    vol.delete()
    _upload(pool, vol_name, fetched.fd, progress)


def _upload(pool: hv_storage.Pool, vol_name: str, fd: int, progress: Progress | None) -> None:
    length = os.fstat(fd).st_size
    # the uploaded bytes replace the file whole; libvirt re-reads the qcow2 header on refresh
    vol = pool.create_volume(xml_volume.volume_xml(vol_name, length, "raw", None, None),
                             what=f"creating volume {vol_name}")
    report = (lambda n: progress("uploading", n, length)) if progress else None
    # Ctrl-C also stops the upload running on the bounded call's thread
    with hv_storage.cancellable(cast(BinaryIO, io.BufferedReader(_FdReader(fd)))) as fh:
        vol.upload(fh, length, report)


def _convert_into(pool: hv_storage.Pool, vol_name: str, fetched: download.Fetched, src_fmt: str, tmp: Path,
                  virtual: int, progress: Progress | None) -> None:
    """qemu-img convert to qcow2: straight into the volume's file when the host's files are visible here."""
    stored = _storing(progress, f"converting {src_fmt} to qcow2")

    def report(percent: float) -> None:
        stored(int(virtual * percent / 100), virtual)

    vol = pool.create_volume(xml_volume.volume_xml(vol_name, 0, "raw", None, None),
                             what=f"creating volume {vol_name}")
    local = _local_file(pool, vol)
    if local is not None:
        qemu_img.convert(fetched.fd, src_fmt, local, progress=report, label=fetched.source)
        return
    converted = tmp / "converted.qcow2"
    qemu_img.convert(fetched.fd, src_fmt, converted, progress=report, label=fetched.source)
    vol.delete()
    fd = os.open(converted, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _upload(pool, vol_name, fd, progress)
    finally:
        os.close(fd)


def _check_stored(pool: hv_storage.Pool, vol_name: str, source: str) -> None:
    """Refuse (the undo deletes it) a stored volume that libvirt sees backed by another file."""
    pool.refresh()
    backing = xml_volume.volume_from_xml(pool.volume(vol_name).xml()).backing_path
    if backing is not None:
        raise InvalidInput(
            f"the image stored from {source} refers to a backing file ({backing})",
            cause="the source changed while it was imported, or its header was not what was checked",
            hint="import a self-contained copy that nothing else writes to while kvmhub reads it",
        )


def _local_file(pool: hv_storage.Pool, vol: hv_storage.Volume) -> Path | None:
    """The volume's file as seen from here, when the daemon is on this machine and the file is writable."""
    if not host_files_here(pool.hv.uri):
        return None
    path = Path(host_root() + vol.path)
    try:
        st = path.stat()
    except OSError:
        return None
    # the empty file libvirt just made, not some other file at that path in this mount namespace
    if st.st_size != 0 or not os.access(path, os.W_OK):
        return None
    return path


class _FdReader(io.RawIOBase):
    """Reads an open descriptor by offset from its start, leaving its shared file position alone."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
        view = memoryview(buf).cast("B")
        data = os.pread(self._fd, len(view), self._offset)
        view[:len(data)] = data
        self._offset += len(data)
        return len(data)


def _delete_if_present(pool: hv_storage.Pool, vol_name: str) -> None:
    if pool.has_volume(vol_name):
        pool.volume(vol_name).delete()
