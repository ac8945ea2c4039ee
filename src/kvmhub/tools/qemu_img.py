"""qemu-img, run safely: explicit -f always, capped CPU time and memory, hostile headers refused."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvmhub.errors import HostProblem, InvalidInput, OperationFailed

Source = Path | int
"""An image as a path, or as a file already open (its descriptor): every step then reads that same file."""

CPU_SECONDS = 120
MEMORY_BYTES = 1024**3
KNOWN_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc")

# magic at offset 0 -> format (names outside KNOWN_FORMATS are refused by check_safe)
_MAGIC = (
    (b"QFI\xfb", "qcow2"),
    (b"QED\x00", "qed"),
    (b"KDMV", "vmdk"),
    (b"COWD", "vmdk"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"),
    (b"LUKS\xba\xbe", "luks"),
    (b"WithoutFreeSpace", "parallels"),
    (b"WithouFreSpacExt", "parallels"),
    (b"#!/bin/sh\n#V2.0 Format", "cloop"),
    (b"Bochs Virtual HD Image", "bochs"),
)
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def _limited(argv: list[str], cpu: int = CPU_SECONDS) -> list[str]:
    """Prefix argv with prlimit so a malicious image cannot make qemu-img spin or balloon."""
    prlimit = shutil.which("prlimit")
    if not prlimit:
        return argv
    return [prlimit, f"--cpu={cpu}", f"--as={MEMORY_BYTES}", *argv]


def _env() -> dict[str, str]:
    # each malloc arena reserves 64 MiB of address space: under --as, many I/O threads made thread creation fail
    return {**os.environ, "MALLOC_ARENA_MAX": "2"}


def _need_qemu_img() -> None:
    if not shutil.which("qemu-img"):
        raise HostProblem("qemu-img is not installed", hint="`apt-get install qemu-utils`")


def _failed(what: str, err: str, shown: list[str]) -> OperationFailed | HostProblem:
    command = f"`qemu-img {shlex.join(shown)}`"
    if "No space left" in err:
        return HostProblem(f"{what}: no space left on the host's disk", cause="qemu-img could not write its output",
                           original=err, hint=f"free space and try again ({command})", code="host.no_space")
    return OperationFailed(f"{what} failed", cause="qemu-img exited with an error", original=err,
                           hint=f"run {command} by hand to see the whole story")


def _arg(src: Source) -> tuple[str, tuple[int, ...]]:
    """The file name to give qemu-img for `src`, and the descriptors it must inherit to open it."""
    if isinstance(src, int):
        # opening /dev/fd/N reopens the very file behind descriptor N, whatever its name now points at
        return f"/dev/fd/{src}", (src,)
    return str(src), ()


def _label(src: Source, label: str | None) -> str:
    return label if label is not None else str(src) if not isinstance(src, int) else f"descriptor {src}"


def run(argv: list[str], *, what: str, timeout: float = 3600, cpu: int = CPU_SECONDS,
        pass_fds: tuple[int, ...] = (), shown: list[str] | None = None) -> str:
    """Run `qemu-img ARGV` under the CPU and memory caps; its stdout, or an error naming `what`.

    ``pass_fds`` are inherited by qemu-img (for /dev/fd/N names); ``shown`` is ARGV as told to the user.
    """
    _need_qemu_img()
    proc = subprocess.run(
        _limited(["qemu-img", *argv], cpu), capture_output=True, text=True, timeout=timeout, check=False, env=_env(),
        pass_fds=pass_fds,
    )
    if proc.returncode != 0:
        raise _failed(what, proc.stderr.strip() or proc.stdout.strip(), shown or argv)
    return proc.stdout


def _head_and_tail(src: Source) -> tuple[bytes, bytes]:
    if isinstance(src, int):
        size = os.fstat(src).st_size
        return os.pread(src, 512, 0), os.pread(src, 512, size - 512) if size >= 1024 else b""
    with open(src, "rb") as fh:
        head = fh.read(512)
        size = fh.seek(0, os.SEEK_END)
        tail = b""
        if size >= 1024:
            fh.seek(size - 512)
            tail = fh.read(512)
    return head, tail


def sniff_format(src: Source) -> str:
    """The format a file's header (or VHD/DMG trailer) claims; raw when nothing in it says otherwise.

    A VDI has its magic at 0x40, a fixed VHD and a DMG keep theirs in the last 512 bytes, a qcow2 of
    version 1 is the older "qcow". `src` is a path or an open descriptor (read without moving its offset).
    """
    head, tail = _head_and_tail(src)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            if fmt == "qcow2" and int.from_bytes(head[4:8], "big") < 2:
                return "qcow"
            return fmt
    if head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if _is_vmdk_descriptor(head):
        return "vmdk-descriptor"
    if tail.startswith(b"conectix"):
        return "vpc"
    if tail.startswith(b"koly"):
        return "dmg"
    return "raw"


def _is_vmdk_descriptor(head: bytes) -> bool:
    """A VMDK text descriptor as QEMU probes one: comment and blank lines, then a ``version=`` line."""
    for line in head.split(b"\n"):
        text = line.strip(b" \t\r")
        if not text or text.startswith(b"#"):
            continue
        return text.startswith(b"version=")
    return False


def info(src: Source, fmt: str, *, label: str | None = None) -> dict[str, Any]:
    """`qemu-img info` of `src` (a path or an open descriptor) read as `fmt`, as a dict."""
    if fmt not in KNOWN_FORMATS:
        raise InvalidInput(f"unknown image format {fmt!r}", hint=f"one of: {', '.join(KNOWN_FORMATS)}")
    name, fds = _arg(src)
    path = _label(src, label)
    out = run(["info", "--output=json", "-f", fmt, name], what=f"reading {path}", cpu=30, pass_fds=fds,
              shown=["info", "-f", fmt, path])
    data: dict[str, Any] = json.loads(out)
    return data


def check_format(src: Source, fmt: str, *, label: str | None = None) -> None:
    """Refuse `src` unless its header agrees that it is `fmt` (a raw file must carry no other format's magic)."""
    path = _label(src, label)
    claimed = sniff_format(src)
    if claimed == "vmdk-descriptor":
        raise InvalidInput(
            f"{path} is a VMDK descriptor: a text file naming other files as the disk's data",
            cause="a descriptor's extents can name any file on the host, so descriptors are never imported",
            hint="export the disk as a single-file VMDK (monolithicSparse or streamOptimized), "
                 "or import its -flat.vmdk data file with {opt:format} raw",
        )
    if claimed not in KNOWN_FORMATS:
        raise InvalidInput(
            f"{path} is a {claimed} image, which kvmhub does not import",
            hint=f"convert it to qcow2 on a trusted machine; kvmhub imports {', '.join(KNOWN_FORMATS)}",
        )
    if claimed != fmt:
        raise InvalidInput(
            f"{path} is not a {fmt} image: its header says {claimed}",
            cause="the file lies about its format, or the wrong {opt:format} was given",
            hint=f"pass {{opt:format}} {claimed} if that is what it is",
        )


def check_safe(src: Source, fmt: str, *, label: str | None = None) -> dict[str, Any]:
    """qemu-img info of an untrusted image, refusing any that points at other files on the host.

    Give an open descriptor to check exactly the file that is then copied or converted from it.
    """
    if not isinstance(src, int):
        src = src.absolute()
    path = _label(src, label)
    own = Path(_arg(src)[0]).resolve()
    check_format(src, fmt, label=path)
    data = info(src, fmt, label=path)
    if data.get("backing-filename") or data.get("full-backing-filename"):
        raise InvalidInput(
            f"{path} refers to a backing file ({data.get('backing-filename')})",
            cause="an imported image must be self-contained; a backing file could expose host files",
            hint="flatten it first: `qemu-img convert -f qcow2 -O qcow2 SRC FLAT.qcow2` on a trusted machine",
        )
    specific = (data.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file"):
        raise InvalidInput(
            f"{path} has an external data file ({specific.get('data-file')})",
            cause="an external data file could point at any file or device on the host",
            hint="flatten it first on a trusted machine",
        )
    if data.get("encrypted") or specific.get("encrypt"):
        raise InvalidInput(
            f"{path} is encrypted",
            cause="kvmhub cannot read an encrypted image without its key",
            hint="decrypt it first: `qemu-img convert --object secret,... --image-opts ...` on a trusted machine",
        )
    if fmt == "vmdk":
        for extent in specific.get("extents") or []:
            name = extent.get("filename")
            if not name or Path(name).absolute().resolve() != own:
                raise InvalidInput(
                    f"{path} is a VMDK whose extents point at {name}",
                    cause="a VMDK's extents can name any file on the host",
                    hint="export it as a single monolithic VMDK",
                )
    return data


def convert(
    src: Source,
    src_fmt: str,
    dst: Path,
    dst_fmt: str = "qcow2",
    *,
    progress: Callable[[float], None] | None = None,
    enter: list[str] | None = None,
    label: str | None = None,
) -> None:
    """`qemu-img convert` src (a path or an open descriptor) to dst; `progress` gets the percentage done.

    ``enter`` runs qemu-img under that prefix (e.g. nsenter into the host's mount namespace, where the
    paths and the backing files they name resolve).
    """
    name, fds = _arg(src)
    path = _label(src, label)
    what = f"converting {path} to {dst_fmt}"
    argv = ["convert", "-f", src_fmt, "-O", dst_fmt, name, str(dst)]
    shown = ["convert", "-f", src_fmt, "-O", dst_fmt, path, str(dst)]
    if progress is None and not enter:
        run(argv, what=what, cpu=3600, pass_fds=fds, shown=shown)
        return
    _need_qemu_img()
    proc = subprocess.Popen(_limited([*(enter or []), "qemu-img", "convert", "-p", *argv[1:]], 3600),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), pass_fds=fds)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        pending = b""
        while chunk := os.read(proc.stdout.fileno(), 4096):
            pending += chunk
            *done, pending = pending.split(b"\r")
            for line in done:
                m = _PROGRESS.search(line)
                if m and progress is not None:
                    progress(float(m.group(1)))
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if code != 0:
        raise _failed(what, err, shown)
