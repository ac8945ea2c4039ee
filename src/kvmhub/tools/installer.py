"""Installer media: find the installer kernel and initrd in an ISO (read with pycdlib, never mounted) or a
directory tree, inject an answer file into the initrd, and build the kernel arguments installers expect.

Injection appends a second ``newc`` cpio archive to the initrd; the kernel unpacks every archive it finds,
compressed or not, one after the other, and a later file wins. Anaconda reads a kickstart named on the
command line (``inst.ks=file:/ks.cfg``); debian-installer reads ``/preseed.cfg`` from the initrd root by
itself, so only ``auto=true priority=critical`` is passed to keep it from asking before the file applies.
"""

from __future__ import annotations

import bz2
import lzma
import os
import shutil
import stat
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pycdlib

from kvmhub.errors import InvalidInput, OperationFailed
from kvmhub.models.documents import TextDocument
from kvmhub.tools.tiny.cpio import CpioEntry, write_initramfs

__all__ = [
    "ANSWER_FILES",
    "LAYOUTS",
    "AnswerFile",
    "BootFiles",
    "CpioMember",
    "Layout",
    "Media",
    "answer_file",
    "check_answer",
    "check_cmdline",
    "find_boot_files",
    "inject",
    "installer_cmdline",
    "label_for_cmdline",
    "open_media",
    "read_answer_document",
    "read_answer_file",
    "read_initrd",
]

Family = Literal["debian-installer", "casper", "anaconda", "suse"]
AnswerKind = Literal["kickstart", "preseed"]

#: Where each answer file goes in the initrd root.
ANSWER_FILES: dict[AnswerKind, str] = {"kickstart": "ks.cfg", "preseed": "preseed.cfg"}

MAX_ANSWER_BYTES = 1024 * 1024
# x86 COMMAND_LINE_SIZE: the kernel truncates anything longer
MAX_CMDLINE = 2048
SERIAL_CONSOLE = "console=tty0 console=ttyS0,115200n8"


@dataclass(frozen=True)
class Layout:
    """Where one kind of installer keeps its kernel and initrd, relative to the media root."""

    family: Family
    kernel: str
    initrd: str
    what: str


#: Known layouts, in the order they are tried (text installers before graphical ones).
LAYOUTS: tuple[Layout, ...] = (
    Layout("debian-installer", "install.amd/vmlinuz", "install.amd/initrd.gz", "Debian netinst"),
    Layout("debian-installer", "install.amd/gtk/vmlinuz", "install.amd/gtk/initrd.gz", "Debian (graphical)"),
    Layout("debian-installer", "debian-installer/amd64/linux", "debian-installer/amd64/initrd.gz",
           "Debian netboot tree"),
    Layout("debian-installer", "install/vmlinuz", "install/initrd.gz", "Ubuntu alternate"),
    Layout("casper", "casper/vmlinuz", "casper/initrd", "Ubuntu live"),
    Layout("casper", "casper/vmlinuz", "casper/initrd.gz", "Ubuntu live"),
    Layout("casper", "casper/vmlinuz", "casper/initrd.lz", "Ubuntu live"),
    Layout("anaconda", "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img", "Fedora/RHEL/CentOS/Alma/Rocky"),
    Layout("suse", "boot/x86_64/loader/linux", "boot/x86_64/loader/initrd", "openSUSE/SLES"),
)

# Which answer files each installer reads from its initrd.
_ACCEPTS: dict[Family, tuple[AnswerKind, ...]] = {
    "debian-installer": ("preseed",),
    "anaconda": ("kickstart",),
    "casper": (),
    "suse": (),
}
_ANSWER_HINT: dict[Family, str] = {
    "debian-installer": "Debian's installer reads preseed files: use {opt:preseed}",
    "anaconda": "Anaconda reads kickstart files: use {opt:kickstart}",
    "casper": "Ubuntu live ISOs install with autoinstall, not preseed or kickstart: pass it with {opt:extra_args},"
    " or use a netinst/alternate ISO",
    "suse": "openSUSE's installer reads AutoYaST profiles: pass autoyast=URL with {opt:extra_args}",
}


@dataclass(frozen=True)
class BootFiles:
    """The installer kernel and initrd found on a medium."""

    layout: Layout
    volume_id: str | None  # the ISO's volume label; None for a directory tree


@dataclass(frozen=True)
class AnswerFile:
    kind: AnswerKind
    data: bytes

    @property
    def name(self) -> str:
        return ANSWER_FILES[self.kind]


@dataclass(frozen=True)
class CpioMember:
    """One member of an initrd archive (as :func:`read_initrd` lists it)."""

    path: str
    mode: int
    data: bytes
    segment: int  # which archive of the initrd, from 0


# --------------------------------------------------------------------------- media


class Media:
    """An installer ISO or directory tree, read-only. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_iso = not path.is_dir()
        self._iso: Any = None
        self._facade = "iso"
        if self.is_iso:
            self._open_iso()

    def _open_iso(self) -> None:
        iso = pycdlib.PyCdlib()
        try:
            iso.open(str(self.path))
        except OSError as exc:
            raise InvalidInput(f"cannot read {self.path}: {exc.strerror}") from None
        except pycdlib.pycdlibexception.PyCdlibException as exc:
            raise InvalidInput(
                f"{self.path} is not an ISO 9660 image",
                cause="no ISO 9660 volume descriptor could be read",
                hint="pass the installer .iso file, or a directory holding its tree",
                original=str(exc),
            ) from None
        self._iso = iso
        # Rock Ridge and Joliet keep the real (lower case, long) names; UDF too; plain ISO 9660 is 8.3
        for facade, present in (("rr", iso.has_rock_ridge()), ("joliet", iso.has_joliet()),
                                ("udf", iso.has_udf())):
            if present:
                self._facade = facade
                break

    def __enter__(self) -> Media:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._iso is not None:
            self._iso.close()
            self._iso = None

    @property
    def volume_id(self) -> str | None:
        """The ISO's volume label (what ``hd:LABEL=`` matches), or None for a tree."""
        if self._iso is None:
            return None
        raw: bytes = self._iso.pvd.volume_identifier
        label = raw.decode("ascii", "replace").strip(" \0")
        return label or None

    def _iso_key(self, rel: str) -> dict[str, str] | None:
        """pycdlib's keyword for ``rel`` (e.g. ``{"rr_path": "/a/b"}``), or None if it is no file."""
        if self._facade != "iso":
            key = {f"{self._facade}_path": "/" + rel}
            try:
                rec = self._iso.get_record(**key)
            except pycdlib.pycdlibexception.PyCdlibException:
                return None
            return key if not rec.is_dir() else None
        return self._plain_iso_key(rel)

    def _plain_iso_key(self, rel: str) -> dict[str, str] | None:
        # ISO 9660 level 1 names: upper case, ';1' version, dots in directory names become '_'
        current = "/"
        parts = rel.split("/")
        for i, part in enumerate(parts):
            wanted = {part.lower(), part.lower().replace(".", "_")}
            try:
                children = list(self._iso.list_children(iso_path=current))
            except pycdlib.pycdlibexception.PyCdlibException:
                return None
            found = None
            for child in children:
                ident = child.file_identifier()
                if ident in (b"\x00", b"\x01"):
                    continue
                name = ident.decode("ascii", "replace").split(";")[0].rstrip(".")
                if name.lower() in wanted and child.is_dir() == (i < len(parts) - 1):
                    found = ident.decode("ascii", "replace")
                    break
            if found is None:
                return None
            current = current.rstrip("/") + "/" + found
        return {"iso_path": current}

    def has_file(self, rel: str) -> bool:
        if self._iso is None:
            return (self.path / rel).is_file()
        return self._iso_key(rel) is not None

    def extract(self, rel: str, dest: Path) -> None:
        """Copy the file ``rel`` of the medium to ``dest``."""
        try:
            if self._iso is None:
                shutil.copyfile(self.path / rel, dest)
                return
            key = self._iso_key(rel)
            if key is None:
                raise InvalidInput(f"{self.path} has no file {rel}")
            with dest.open("wb") as fh:
                self._iso.get_file_from_iso_fp(fh, **key)
        except OSError as exc:
            raise OperationFailed(
                f"cannot copy {rel} out of {self.path}",
                cause=exc.strerror or type(exc).__name__,
                hint=f"check the free space in {dest.parent}",
                original=str(exc),
            ) from None
        except pycdlib.pycdlibexception.PyCdlibException as exc:
            raise InvalidInput(
                f"cannot read {rel} from {self.path}",
                cause="the ISO's directory records are damaged",
                original=str(exc),
            ) from None


def open_media(path: Path) -> Media:
    """Open an installer ISO or directory tree for reading. Raises InvalidInput if it is neither."""
    if not path.exists():
        raise InvalidInput(f"{path} does not exist", hint="give the installer ISO file or its unpacked tree")
    if not (path.is_dir() or path.is_file()):
        raise InvalidInput(f"{path} is neither a file nor a directory")
    return Media(path)


def find_boot_files(media: Media) -> BootFiles:
    """The first known installer layout on ``media``. Raises InvalidInput listing every path looked for."""
    for layout in LAYOUTS:
        if media.has_file(layout.kernel) and media.has_file(layout.initrd):
            return BootFiles(layout, media.volume_id)
    looked = "; ".join(f"{lay.kernel} + {lay.initrd} ({lay.what})" for lay in LAYOUTS)
    raise InvalidInput(
        f"no installer kernel and initrd found in {media.path}",
        cause=f"looked for: {looked}",
        hint="boot it with {opt:iso} instead (CD-ROM and VNC), or give the files with {opt:kernel}/{opt:initrd}",
    )


# --------------------------------------------------------------------------- answer files and arguments


def read_answer_document(path: Path, kind: AnswerKind) -> TextDocument:
    """Read a kickstart or preseed file as a document named after its path; refuses what is not UTF-8 text."""
    option = f"--{kind}"
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InvalidInput(f"{option} {path} is a directory", hint=f"give the {kind} file itself") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {option} {path}: {exc.strerror}") from None
    if len(data) > MAX_ANSWER_BYTES:
        raise InvalidInput(f"{option} {path} is {len(data)} bytes", cause="an answer file over 1 MiB is not text",
                           hint=f"check that {path} is the {kind} file")
    try:
        return TextDocument(name=str(path), text=data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{option} {path} is not text",
            cause=f"byte {exc.start} is not UTF-8",
            hint=f"give the {kind} file, not an archive or image",
        ) from None


def answer_file(doc: TextDocument, kind: AnswerKind) -> AnswerFile:
    """A kickstart or preseed document checked for what an installer can read: text of sensible size."""
    option, name = f"--{kind}", doc.name
    data = doc.text.encode("utf-8", "surrogatepass")
    if not data.strip():
        raise InvalidInput(f"{option} {name} is empty", hint=f"write the {kind} directives into it")
    if len(data) > MAX_ANSWER_BYTES:
        raise InvalidInput(f"{option} {name} is {len(data)} bytes", cause="an answer file over 1 MiB is not text",
                           hint=f"check that {name} is the {kind} file")
    if "\0" in doc.text:
        raise InvalidInput(f"{option} {name} is not text", cause="it holds NUL bytes",
                           hint=f"give the {kind} file, not an archive or image")
    return AnswerFile(kind, data)


def read_answer_file(path: Path, kind: AnswerKind) -> AnswerFile:
    """Read and check a kickstart or preseed file (:func:`read_answer_document`, then :func:`answer_file`)."""
    return answer_file(read_answer_document(path, kind), kind)


def check_answer(family: Family, answer: AnswerFile | None, media: Path) -> None:
    """Refuse an answer file the installer on ``media`` does not read."""
    if answer is not None and answer.kind not in _ACCEPTS[family]:
        raise InvalidInput(
            f"the installer in {media} does not read {answer.kind} files",
            cause=f"its layout is {family}",
            hint=_ANSWER_HINT[family],
        )


def label_for_cmdline(label: str) -> str:
    """A volume label as udev names it under /dev/disk/by-label (``hd:LABEL=`` matches that name)."""
    keep = set("#+-.:=@_")
    return "".join(c if (c.isascii() and c.isalnum()) or c in keep else f"\\x{ord(c):02x}" for c in label)


def check_cmdline(text: str, option: str) -> str:
    """Refuse kernel arguments the boot protocol cannot carry."""
    if any(c in text for c in "\0\n\r"):
        raise InvalidInput(f"{option} holds a line break or NUL", hint="give the arguments on one line")
    if len(text.encode()) >= MAX_CMDLINE:
        raise InvalidInput(f"{option} is {len(text.encode())} bytes long",
                           cause=f"the kernel keeps only {MAX_CMDLINE - 1} bytes of its command line")
    return text


def installer_cmdline(boot: BootFiles, answer: AnswerFile | None, extra_args: str | None) -> str:
    """The installer's kernel command line: serial console, install source, answer file, then ``extra_args``."""
    args = [SERIAL_CONSOLE]
    if boot.layout.family == "anaconda" and boot.volume_id:
        # what the ISO's own boot menu passes; packages come from the CD-ROM (inst.repo=cdrom is the default)
        args.append(f"inst.stage2=hd:LABEL={label_for_cmdline(boot.volume_id)}")
    if answer is not None and answer.kind == "kickstart":
        args.append(f"inst.ks=file:/{answer.name}")
    if answer is not None and answer.kind == "preseed":
        args.append("auto=true priority=critical")
    if extra_args:
        args.append(extra_args.strip())
    return check_cmdline(" ".join(args), "the installer command line")


# --------------------------------------------------------------------------- initrd


def inject(initrd: Path, files: dict[str, bytes]) -> None:
    """Append a gzip-compressed newc archive holding ``files`` (path in the initrd root -> bytes) to ``initrd``."""
    entries = [CpioEntry(name.lstrip("/"), stat.S_IFREG | 0o644, data) for name, data in files.items()]
    fd, tmp = tempfile.mkstemp(prefix=".inject-", dir=initrd.parent)
    os.close(fd)
    try:
        write_initramfs(Path(tmp), entries)
        appended = Path(tmp).read_bytes()
        with initrd.open("ab") as fh:
            # zeros between archives are skipped; they keep the new archive 4-byte aligned like the kernel wants
            fh.write(b"\0" * (-fh.tell() % 4))
            fh.write(appended)
    except OSError as exc:
        raise OperationFailed(
            f"cannot add {', '.join(files)} to the initrd",
            cause=exc.strerror or type(exc).__name__,
            hint=f"check the free space in {initrd.parent}",
            original=str(exc),
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


_NEWC_MAGICS = (b"070701", b"070702")
_HEADER_LEN = 110


def _newc(data: bytes, start: int, segment: int) -> tuple[list[CpioMember], int]:
    """Members of the newc archive at ``start`` up to its trailer, and the offset after it."""
    members: list[CpioMember] = []
    pos = start
    while True:
        header = data[pos:pos + _HEADER_LEN]
        if len(header) < _HEADER_LEN or header[:6] not in _NEWC_MAGICS:
            raise InvalidInput("the initrd holds a damaged cpio archive", cause=f"no newc header at offset {pos}")
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_end = pos + _HEADER_LEN + namesize
        name = data[pos + _HEADER_LEN:name_end - 1].decode("utf-8", "replace")
        body = name_end + (-(name_end - start) % 4)
        pos = body + size + (-(body + size - start) % 4)
        if pos > len(data):
            raise InvalidInput("the initrd holds a truncated cpio archive", cause=f"member {name!r} is cut short")
        if name == "TRAILER!!!":
            return members, pos
        members.append(CpioMember(name, mode, data[body:body + size], segment))


def _decompress(data: bytes, pos: int) -> tuple[bytes, int] | None:
    """(decompressed bytes, offset after the stream) for a compressed stream at ``pos``; None if unknown."""
    head = data[pos:pos + 6]
    decoder: Any
    if head.startswith(b"\x1f\x8b"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif head.startswith(b"\xfd7zXZ\0"):
        decoder = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    elif head.startswith(b"\x5d\0\0"):
        decoder = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    elif head.startswith(b"BZh"):
        decoder = bz2.BZ2Decompressor()
    else:
        return None
    try:
        out = decoder.decompress(data[pos:])
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
        raise InvalidInput("the initrd holds a damaged compressed archive", original=str(exc)) from None
    if not decoder.eof:
        raise InvalidInput("the initrd holds a truncated compressed archive", cause=f"at offset {pos}")
    return out, len(data) - len(decoder.unused_data)


def _archives(buf: bytes, first_segment: int) -> list[list[CpioMember]]:
    """The uncompressed newc archives one after the other in ``buf`` (zeros between them skipped)."""
    archives: list[list[CpioMember]] = []
    pos = 0
    while pos < len(buf):
        if buf[pos] == 0:
            pos += 1
            continue
        members, pos = _newc(buf, pos, first_segment + len(archives))
        archives.append(members)
    return archives


def read_initrd(path: Path) -> list[CpioMember]:
    """Every member of every archive in an initrd, in unpacking order (a later member of a path wins).

    Walks the file as the kernel does: uncompressed newc archives and gzip, xz, lzma or bzip2 streams of
    them, zeros between. Everything is held in memory: meant for checking small initrds. Raises
    InvalidInput for damaged archives and for compressions it does not read (zstd, lz4, lzo).
    """
    data = path.read_bytes()
    members: list[CpioMember] = []
    segment = 0
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        if data[pos:pos + 6] in _NEWC_MAGICS:
            found, pos = _newc(data, pos, segment)
            members += found
            segment += 1
            continue
        unpacked = _decompress(data, pos)
        if unpacked is None:
            raise InvalidInput(
                "the initrd holds an archive kvmhub cannot read",
                cause=f"unknown magic {data[pos:pos + 4].hex()} at offset {pos} (zstd, lz4 and lzo are not read)",
            )
        buf, pos = unpacked
        for archive in _archives(buf, segment):
            members += archive
            segment += 1
    return members
