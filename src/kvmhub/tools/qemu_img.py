"""qemu-img, run safely: explicit -f always, capped CPU time and memory, hostile headers refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kvmhub.errors import HostProblem, InvalidInput, OperationFailed

CPU_SECONDS = 120
MEMORY_BYTES = 1024**3
KNOWN_FORMATS = ("qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc")

_MAGIC = (
    (b"QFI\xfb", "qcow2"),
    (b"KDMV", "vmdk"),
    (b"# Disk DescriptorFile", "vmdk"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vpc"),
)


def _limited(argv: list[str], cpu: int = CPU_SECONDS) -> list[str]:
    """Prefix argv with prlimit so a malicious image cannot make qemu-img spin or balloon."""
    prlimit = shutil.which("prlimit")
    if not prlimit:
        return argv
    return [prlimit, f"--cpu={cpu}", f"--as={MEMORY_BYTES}", *argv]


def run(argv: list[str], *, what: str, timeout: float = 3600, cpu: int = CPU_SECONDS) -> str:
    if not shutil.which("qemu-img"):
        raise HostProblem("qemu-img is not installed", hint="`apt-get install qemu-utils`")
    # each malloc arena reserves 64 MiB of address space: under --as, many I/O threads made thread creation fail
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        _limited(["qemu-img", *argv], cpu), capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    if proc.returncode != 0:
        err = proc.stderr.strip() or proc.stdout.strip()
        if "No space left" in err:
            raise HostProblem(f"{what}: no space left on the host's disk", original=err,
                              hint="free space and try again")
        raise OperationFailed(f"{what} failed", original=err)
    return proc.stdout


def sniff_format(path: Path) -> str:
    """The format a file's header claims (raw when no known magic). A VDI has its magic at 0x40."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    return "raw"


def info(path: Path, fmt: str) -> dict[str, Any]:
    if fmt not in KNOWN_FORMATS:
        raise InvalidInput(f"unknown image format {fmt!r}", hint=f"one of: {', '.join(KNOWN_FORMATS)}")
    out = run(["info", "--output=json", "-f", fmt, str(path)], what=f"reading {path}", cpu=30)
    data: dict[str, Any] = json.loads(out)
    return data


def check_safe(path: Path, fmt: str) -> dict[str, Any]:
    """qemu-img info of an untrusted image, refusing any that points at other files on the host."""
    claimed = sniff_format(path)
    if claimed != fmt and not (fmt == "raw" and claimed == "raw"):
        raise InvalidInput(
            f"{path} is not a {fmt} image: its header says {claimed}",
            cause="the file lies about its format, or the wrong --format was given",
            hint=f"pass --format {claimed} if that is what it is",
        )
    data = info(path, fmt)
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
    if fmt == "vmdk":
        for extent in specific.get("extents") or []:
            if extent.get("filename") and Path(extent["filename"]).resolve() != path.resolve():
                raise InvalidInput(
                    f"{path} is a VMDK descriptor pointing at {extent['filename']}",
                    cause="a descriptor's extents can name any file on the host",
                    hint="export it as a single monolithic VMDK",
                )
    return data


def convert(src: Path, src_fmt: str, dst: Path, dst_fmt: str = "qcow2") -> None:
    run(
        ["convert", "-f", src_fmt, "-O", dst_fmt, str(src), str(dst)],
        what=f"converting {src} to {dst_fmt}",
        cpu=3600,
    )
