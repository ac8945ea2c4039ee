"""The header of a libvirt QEMU save image (``virsh save``, ``virDomainSaveFlags``), read and rewritten in place.

libvirt's layout (``src/qemu/qemu_saveimage.h``): a fixed header of 92 bytes (the magic ``LibvirtQemudSave``,
then 19 native 32-bit words: version, data length, was-running, compression, cookie offset, 14 unused), then
``data length`` bytes holding the domain XML (NUL-ended), the cookie XML (NUL-ended, at the cookie offset) and
zero padding, then QEMU's migration stream. libvirt itself rewrites this region in place
(``virDomainSaveImageDefineXML``) as long as the new text fits the data length; so does :func:`write_header`,
without libvirt's check that the name and UUID stay the same, which a warm template needs.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from kvmhub.errors import InvalidInput, OperationFailed

MAGIC = b"LibvirtQemudSave"
PARTIAL = b"LibvirtQemudPart"  # the magic while libvirt is still writing the file
_FIXED = struct.Struct("<16s19I")
HEADER_BYTES = _FIXED.size
VERSIONS = (1, 2)
_MAX_DATA = 16 * 1024 * 1024


@dataclass(frozen=True)
class SaveHeader:
    """A save image's header: the domain XML and cookie, and the fixed fields kept as they are."""

    version: int
    data_len: int
    was_running: bool
    compressed: int
    xml: str
    cookie: str | None
    unused: tuple[int, ...]


def read_header(path: str) -> SaveHeader:
    """The header of the save image at ``path``; raises InvalidInput for a file that is not one."""
    try:
        with open(path, "rb") as fh:
            fixed = fh.read(HEADER_BYTES)
            if len(fixed) < HEADER_BYTES:
                raise InvalidInput(f"{path} is not a libvirt save image", cause="shorter than its header")
            magic, version, data_len, was_running, compressed, cookie_at, *unused = _FIXED.unpack(fixed)
            if magic == PARTIAL:
                raise InvalidInput(f"{path} is an unfinished libvirt save image",
                                   cause="the save that wrote it did not complete")
            if magic != MAGIC or version not in VERSIONS or not 0 < data_len <= _MAX_DATA:
                raise InvalidInput(f"{path} is not a libvirt save image kvmhub reads",
                                   cause=f"magic {magic!r}, version {version}, data length {data_len}")
            data = fh.read(data_len)
    except OSError as exc:
        raise OperationFailed(f"cannot read the save image {path}", cause=str(exc)) from exc
    if len(data) < data_len:
        raise InvalidInput(f"{path} is a truncated libvirt save image")
    xml_end = data.find(b"\0")
    if xml_end < 0:
        raise InvalidInput(f"{path} is not a libvirt save image kvmhub reads", cause="its XML has no end")
    cookie = None
    if version >= 2 and cookie_at:
        end = data.find(b"\0", cookie_at)
        if cookie_at <= xml_end or end < 0:
            raise InvalidInput(f"{path} is not a libvirt save image kvmhub reads", cause="its cookie is misplaced")
        cookie = data[cookie_at:end].decode()
    return SaveHeader(version, data_len, bool(was_running), compressed, data[:xml_end].decode(), cookie,
                      tuple(unused))


def pack_data(header: SaveHeader, xml: str) -> tuple[int, bytes]:
    """``xml`` and the header's cookie laid out as libvirt does, padded to the header's data length: (cookie
    offset, data). Raises InvalidInput when they do not fit."""
    data = xml.encode() + b"\0"
    cookie_at = 0
    if header.cookie is not None:
        cookie_at = len(data)
        data += header.cookie.encode() + b"\0"
    if len(data) > header.data_len:
        raise InvalidInput(f"the new definition is {len(data) - header.data_len} bytes too long for the save image",
                           cause=f"its header holds {header.data_len} bytes")
    return cookie_at, data + b"\0" * (header.data_len - len(data))


def write_header(path: str, header: SaveHeader, xml: str) -> None:
    """Put ``xml`` (with the header's cookie) into the save image at ``path`` in place; the memory stream that
    follows is not touched. Raises InvalidInput when it does not fit, OperationFailed when the file cannot be
    written."""
    cookie_at, data = pack_data(header, xml)
    fixed = _FIXED.pack(MAGIC, header.version, header.data_len, int(header.was_running), header.compressed,
                        cookie_at, *header.unused)
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, fixed + data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationFailed(f"cannot write the header of the save image {path}", cause=str(exc)) from exc
