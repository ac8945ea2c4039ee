"""The libvirt save image header: read, rewritten in place with another definition, the memory stream untouched."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from kvmhub.errors import InvalidInput
from kvmhub.tools import savefile

XML = "<domain type='qemu'>\n  <name>src</name>\n  <uuid>9b19acaf-e5fc-42ec-95d8-667e79aa5c7d</uuid>\n</domain>\n"
COOKIE = "<cookie>\n  <slirpHelper/>\n</cookie>\n"
STREAM = b"QEVM\x00\x00\x00\x03" + bytes(range(256)) * 8


def _image(path: Path, *, data_len: int = 4096, version: int = 2, magic: bytes = savefile.MAGIC) -> Path:
    """A save image laid out as libvirt 9.0 writes one: fixed header, XML, cookie, zero padding, stream."""
    data = XML.encode() + b"\0"
    cookie_at = len(data)
    data += COOKIE.encode() + b"\0"
    data += b"\0" * (data_len - len(data))
    fixed = struct.pack("<16s19I", magic, version, data_len, 1, 0, cookie_at, *([0] * 14))
    path.write_bytes(fixed + data + STREAM)
    return path


def test_the_header_is_read_as_libvirt_wrote_it(tmp_path: Path) -> None:
    header = savefile.read_header(str(_image(tmp_path / "s.save")))
    assert (header.version, header.data_len, header.was_running, header.compressed) == (2, 4096, True, 0)
    assert header.xml == XML
    assert header.cookie == COOKIE


def test_a_new_definition_replaces_the_old_and_the_stream_stays(tmp_path: Path) -> None:
    path = _image(tmp_path / "s.save")
    size = path.stat().st_size
    new = XML.replace("<name>src</name>", "<name>a-much-longer-name-for-the-new-vm</name>")
    savefile.write_header(str(path), savefile.read_header(str(path)), new)
    again = savefile.read_header(str(path))
    assert again.xml == new
    assert again.cookie == COOKIE
    assert again.data_len == 4096
    assert path.stat().st_size == size
    assert path.read_bytes().endswith(STREAM)
    savefile.write_header(str(path), again, XML)  # shorter again: the rest is zeroed, nothing of the long one stays
    assert b"a-much-longer" not in path.read_bytes()
    assert savefile.read_header(str(path)).xml == XML


def test_a_definition_too_long_for_the_header_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = _image(tmp_path / "s.save", data_len=300)
    before = path.read_bytes()
    with pytest.raises(InvalidInput, match="too long for the save image"):
        savefile.write_header(str(path), savefile.read_header(str(path)), XML + " " * 400)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("kind", "message"), [
    ("partial", "unfinished"), ("other", "not a libvirt save image"), ("version", "not a libvirt save image"),
    ("short", "shorter than its header"),
])
def test_files_that_are_not_save_images_are_refused(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "s.save"
    if kind == "partial":
        _image(path, magic=savefile.PARTIAL)
    elif kind == "other":
        _image(path, magic=b"QFI\xfb" + b"\0" * 12)
    elif kind == "version":
        _image(path, version=7)
    else:
        path.write_bytes(savefile.MAGIC)
    with pytest.raises(InvalidInput) as err:
        savefile.read_header(str(path))
    assert message in str(err.value) + str(err.value.cause)

