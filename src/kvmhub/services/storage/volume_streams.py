"""Volumes filled from a byte stream and read out as one: how a remote client sends an ISO or a disk image
(an API request's body) and fetches a volume's bytes, with no file on the server's disk in between.

An upload's length is known before it starts (it sizes the volume and is checked against the pool's free
space); its first bytes are checked before any reaches libvirt: only qcow2 and raw are taken, and a qcow2
header that names a backing file or an external data file, or that is encrypted, is refused, as
:func:`kvmhub.services.storage.volumes.upload` refuses such a file.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import VolumeInfo
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.storage import volumes
from kvmhub.tools import qemu_img
from kvmhub.xml import volume as xml_volume

HEAD_BYTES = 64 * 1024  # what format sniffing and the qcow2 header checks read
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_DATA_FILE_BIT = 1 << 2  # incompatible feature: the guest's data lives in another file
DOWNLOAD_QUEUE = 8  # chunks held between libvirt and a slow reader


class Reader:
    """Exactly-sized reads over a source that hands out chunks of any size (b"" at its end)."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next = next_chunk
        self._buffer = bytearray()
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        while not self._ended and (n < 0 or len(self._buffer) < n):
            chunk = self._next()
            if not chunk:
                self._ended = True
            self._buffer += chunk
        size = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _sniff(head: bytes) -> str:
    fd = os.memfd_create("kvmhub-upload-head", os.MFD_CLOEXEC)
    try:
        os.write(fd, head)
        return qemu_img.sniff_format(fd)
    finally:
        os.close(fd)


def check_head(head: bytes, fmt: str | None, label: str) -> str:
    """The format of an upload whose first bytes are ``head`` (``fmt`` if given and it agrees).

    Raises InvalidInput for formats other than qcow2 and raw, and for a qcow2 header naming a backing file or
    an external data file, or saying it is encrypted.
    """
    sniffed = _sniff(head)
    if fmt is not None and fmt not in volumes.FORMATS:
        raise InvalidInput(f"{label}: unknown volume format {fmt!r}", hint="qcow2 or raw")
    if sniffed not in volumes.FORMATS:
        raise InvalidInput(f"{label} is {sniffed}; volumes take qcow2 or raw bytes",
                           cause="other formats can name further files on the host",
                           hint=f"convert it first: `qemu-img convert -f {sniffed} -O qcow2 SRC out.qcow2`")
    if fmt == "raw" and sniffed == "qcow2":
        raise InvalidInput(f"{label} starts with a qcow2 header but was sent as raw",
                           cause="a guest given it as a raw disk could write a header naming host files",
                           hint="send it as qcow2 (or leave the format out)")
    if fmt == "qcow2" and sniffed != "qcow2":
        raise InvalidInput(f"{label} was sent as qcow2 but has no qcow2 header", hint="send it as raw")
    if sniffed == "qcow2":
        _check_qcow2(head, label)
    return sniffed


def _check_qcow2(head: bytes, label: str) -> None:
    if len(head) < 72:
        raise InvalidInput(f"{label}: the qcow2 header is cut short ({len(head)} bytes)")
    version = int.from_bytes(head[4:8], "big")
    backing_offset = int.from_bytes(head[8:16], "big")
    backing_size = int.from_bytes(head[16:20], "big")
    if backing_offset or backing_size:
        start = backing_offset if backing_offset + backing_size <= len(head) else 0
        name = head[start:start + min(backing_size, 1024)].decode("utf-8", "replace") if start else "?"
        raise InvalidInput(f"{label} refers to a backing file ({name})",
                           cause="an uploaded image must be self-contained; a backing file could expose host files",
                           hint="flatten it first: `qemu-img convert -f qcow2 -O qcow2 SRC FLAT.qcow2` "
                           "on a trusted machine")
    if int.from_bytes(head[32:36], "big"):
        raise InvalidInput(f"{label} is encrypted", cause="kvmhub cannot read an encrypted image without its key",
                           hint="decrypt it first on a trusted machine")
    if version >= 3:
        if len(head) < 104:
            raise InvalidInput(f"{label}: the qcow2 version 3 header is cut short ({len(head)} bytes)")
        if int.from_bytes(head[72:80], "big") & QCOW2_DATA_FILE_BIT:
            raise InvalidInput(f"{label} has an external data file",
                               cause="an external data file could point at any file or device on the host",
                               hint="flatten it first on a trusted machine")


def upload_stream(hv: Hypervisor, ref: str, src: Reader, length: int, *, fmt: str | None = None,
                  report: Reporter = QUIET, project: str | None = None) -> VolumeInfo:
    """Fill a new volume ``ref`` (POOL/NAME) of ``length`` bytes from ``src``.

    Refused before anything is made: bad names, pools that are not active file pools, a name taken, a length
    over the pool's free space, a hostile or unknown header. A source that ends early, fails, or a cancel
    (``report.cancel``) leaves no volume behind.
    """
    pool_name, name = volumes.split_ref(ref)
    volumes.check_volume_name(name, pool_name)
    if length <= 0:
        raise InvalidInput(f"nothing to upload into {ref}: the body is empty", hint="send the file's bytes")
    pool = hv_storage.lookup_pool(hv, pool_name)
    if not pool.is_active():
        raise Conflict(f"pool {pool_name!r} is not active", hint=f"start it: {{cmd:pool start {pool_name}}}",
                       code="pool.inactive")
    kind, _target = volumes.pool_kind(pool)
    if kind not in volumes.FILE_POOLS:
        raise InvalidInput(f"pool {pool_name} is a {kind} pool; uploads make new files in dir, fs or netfs pools")
    if pool.has_volume(name):
        raise Conflict(f"volume {name!r} already exists in pool {pool_name}",
                       hint=f"upload under another name, or {{cmd:vol rm {pool_name}/{name}}} first", code="name.taken")
    volumes.check_space(pool, length)
    head = src.read(min(HEAD_BYTES, length))
    fmt = check_head(head, fmt, f"the upload into {ref}")
    xml = xml_volume.volume_xml(name, length, "raw", None, None)
    rest = length - len(head)
    sent_head = False

    def next_chunk() -> bytes:
        nonlocal rest, sent_head
        if not sent_head:
            sent_head = True
            return head
        data = src.read(min(hv_storage.CHUNK, rest)) if rest > 0 else b""
        rest -= len(data)
        return data

    feed = cast(BinaryIO, Reader(next_chunk))

    def make(op: Operation) -> hv_storage.Volume:
        vol = volumes.created_with_undo(op, pool, name,
                                        lambda: pool.create_volume(xml, what=f"creating volume {name}"))
        vol.upload(feed, length, lambda n: op.progress(f"uploading into {ref}", n, length))
        pool.refresh()
        uploaded = pool.volume(name)
        volumes.check_chain(hv, pool, uploaded, fmt)  # what libvirt now reads from it must be as checked
        return uploaded

    return volumes.make_volume(hv, "volume.upload", pool, name, length, make, fault="vol-upload", report=report,
                               project=project, capacity=length)


def download_stream(hv: Hypervisor, ref: str) -> tuple[VolumeInfo, Iterator[bytes]]:
    """A volume's description and its bytes as an iterator of chunks, read from libvirt on a thread of its own.

    Missing volumes, inactive pools and links out of the pool are refused, and a transfer that cannot start
    raises, before this returns (the first chunk is read here); a consumer that stops early (closes the
    iterator) stops the transfer.
    """
    pool, vol = volumes.get_volume(hv, ref)
    volumes.check_confined(hv, pool, vol)
    info = volumes.show_volume(hv, ref)
    chunks = _chunks(vol)
    first = next(chunks, None)
    if first is None:
        return info, iter(())
    return info, itertools.chain((first,), chunks)


class _Gone(OSError):
    pass


def _chunks(vol: hv_storage.Volume) -> Iterator[bytes]:
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(DOWNLOAD_QUEUE)
    gone = threading.Event()

    def put(item: bytes | BaseException | None) -> None:
        while not gone.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Gone("the reader of the download went away")

    class Sink:
        def write(self, data: bytes) -> int:
            put(bytes(data))
            return len(data)

    def pump() -> None:
        try:
            vol.download(cast(BinaryIO, Sink()))
            put(None)
        except _Gone:
            pass
        except BaseException as exc:  # handed to the reader, which raises it
            try:
                put(exc)
            except _Gone:
                pass

    thread = threading.Thread(target=pump, name=f"download:{vol.pool}/{vol.name}", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        gone.set()
