"""A writer for gzip-compressed ``newc`` cpio archives, the format the Linux kernel unpacks as initramfs.

Writing the archive in Python (rather than running ``cpio``) lets the builder add device nodes without
root, give every file root ownership and a fixed timestamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpioEntry", "entries_from_tree", "write_initramfs"]

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: ``path`` is relative to the archive root (no leading slash)."""

    path: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _write_entry(out: gzip.GzipFile, ino: int, entry: CpioEntry) -> None:
    name = entry.path.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino,
        entry.mode,
        0,  # uid
        0,  # gid
        nlink,
        0,  # mtime
        len(entry.data),
        0,  # dev major
        0,  # dev minor
        entry.rdev_major,
        entry.rdev_minor,
        len(name),
        0,  # check
    )
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header)
    out.write(name)
    out.write(_pad4(len(header) + len(name)))
    out.write(entry.data)
    out.write(_pad4(len(entry.data)))


def entries_from_tree(root: Path) -> Iterator[CpioEntry]:
    """Every directory, file and symlink under ``root``, parents before children, sorted by name."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            full = base / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield CpioEntry(rel, stat.S_IFLNK | 0o777, os.readlink(full).encode())
            elif stat.S_ISDIR(st.st_mode):
                yield CpioEntry(rel, stat.S_IFDIR | stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                yield CpioEntry(rel, stat.S_IFREG | stat.S_IMODE(st.st_mode), full.read_bytes())


def write_initramfs(dest: Path, entries: Iterator[CpioEntry] | list[CpioEntry], *, level: int = 6) -> None:
    """Write ``entries`` as a gzip-compressed newc cpio archive to ``dest``."""
    with dest.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as gz:
        ino = 1
        for entry in entries:
            _write_entry(gz, ino, entry)
            ino += 1
        _write_entry(gz, ino, CpioEntry(_TRAILER, 0))
