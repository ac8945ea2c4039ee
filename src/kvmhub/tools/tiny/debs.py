"""The Debian packages behind the tiny appliance: resolving them with apt, fetching and extracting them.

Which packages: the kernel that ``linux-image-cloud-amd64`` stands for (``linux-image-amd64`` for the generic
flavour, whose kernel also has 9p and vmgenid), busybox-static, qemu-guest-agent,
dropbear-bin and the library packages (lib*) that qemu-guest-agent and dropbear-bin depend on. Each is
pinned by file name and SHA-256 as apt announces them, so the builder's cache key follows the archive.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kvmhub.errors import OperationFailed
from kvmhub.tools.tiny._proc import run

__all__ = [
    "KERNELS",
    "KERNEL_META_PACKAGE",
    "Deb",
    "dpkg_extract",
    "fetch",
    "print_uris",
    "resolve_debs",
    "resolve_packages",
]

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
KERNELS = {"cloud": KERNEL_META_PACKAGE, "generic": "linux-image-amd64"}  # flavour -> Debian's kernel package
_BASE_PACKAGES = ("busybox-static", "qemu-guest-agent", "dropbear-bin")
# Only these get their library dependencies followed (and only into lib* packages).
_LIB_ROOTS = ("qemu-guest-agent", "dropbear-bin")


@dataclass(frozen=True)
class Deb:
    package: str
    filename: str
    sha256: str


_APT_HINT = (
    "check that the Debian archive is reachable (apt-get update must work), or put the .deb files into {debs} by hand"
)
_updated = False


def _apt(argv: Sequence[str], what: str, cwd: Path | None = None) -> str:
    """Run an apt command; on failure refresh the package lists once and try again."""
    global _updated
    try:
        return run(argv, what=what, cwd=cwd, hint="run: apt-get update")
    except OperationFailed:
        if _updated:
            raise
    _updated = True
    run(
        ["apt-get", "update"],
        what="apt-get update",
        hint="check /etc/apt/sources.list and that the Debian mirror is reachable",
        timeout=600,
    )
    return run(argv, what=what, cwd=cwd, hint="check /etc/apt/sources.list, then run: apt-get update")


def _depends(packages: Sequence[str]) -> dict[str, list[str]]:
    """Depends and Pre-Depends of ``packages`` and, recursively, of everything they pull in."""
    out = _apt(["apt-cache", "depends", "--recurse", "--important", *packages], "apt-cache depends")
    deps: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if not line.startswith(" "):
            current = deps.setdefault(line.strip(), [])
            continue
        m = re.match(r"\s*\|?(?:Pre)?Depends:\s*(\S+)", line)
        if m and not m.group(1).startswith("<"):
            current.append(m.group(1).split(":")[0])
    return deps


def _is_library(package: str) -> bool:
    return (package.startswith("lib") or package.startswith("zlib")) and "perl" not in package


def resolve_packages(meta: str = KERNEL_META_PACKAGE) -> list[str]:
    """The kernel package ``meta`` stands for, the base packages and the library packages qemu-ga and dropbear
    need."""
    deps = _depends([meta, *_BASE_PACKAGES])
    kernel = next((d for d in deps.get(meta, []) if d.startswith("linux-image-")), None)
    if kernel is None:
        raise OperationFailed(
            f"cannot tell which kernel {meta} stands for",
            cause="apt-cache depends listed no linux-image-* dependency",
            hint="run: apt-get update, then apt-cache depends " + meta,
        )
    libs: list[str] = []
    todo = list(_LIB_ROOTS)
    while todo:
        for dep in deps.get(todo.pop(), []):
            if _is_library(dep) and dep not in libs:
                libs.append(dep)
                todo.append(dep)
    return [kernel, *_BASE_PACKAGES, *sorted(libs)]


def print_uris(packages: Sequence[str]) -> list[Deb]:
    out = _apt(["apt-get", "download", "--print-uris", *packages], "apt-get download --print-uris")
    found: dict[str, Deb] = {}
    for line in out.splitlines():
        m = re.match(r"'[^']+'\s+(\S+\.deb)\s+\d+\s+SHA256:([0-9a-f]{64})", line)
        if m:
            filename = m.group(1)
            package = filename.split("_", 1)[0]
            found[package] = Deb(package, filename, m.group(2))
    missing = [p for p in packages if p not in found]
    if missing:
        raise OperationFailed(
            "apt did not offer every package the tiny appliance needs",
            cause="no download for: " + ", ".join(missing),
            hint="run: apt-get update (the package lists may be stale or missing)",
        )
    return [found[p] for p in packages]


def resolve_debs(meta: str = KERNEL_META_PACKAGE) -> list[Deb]:
    return print_uris(resolve_packages(meta))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(debs_dir: Path, debs: Sequence[Deb], *, prune: bool = True) -> dict[str, Path]:
    """Download the .deb files not already in ``debs_dir`` (checked by SHA-256)."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    wanted = {deb.package: debs_dir / deb.filename for deb in debs}
    missing = [d for d in debs if not (wanted[d.package].is_file() and _sha256(wanted[d.package]) == d.sha256)]
    if missing:
        _apt(
            ["apt-get", "download", *[d.package for d in missing]],
            "apt-get download",
            cwd=debs_dir,
        )
        for deb in missing:
            path = wanted[deb.package]
            if not path.is_file() or _sha256(path) != deb.sha256:
                raise OperationFailed(
                    f"downloaded {deb.filename} is missing or corrupt",
                    cause="apt-get download did not produce the file apt announced",
                    hint=_APT_HINT.format(debs=debs_dir),
                )
    if prune:
        keep = {p.name for p in wanted.values()}
        for old in debs_dir.glob("*.deb"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
    return wanted


def dpkg_extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    run(
        ["dpkg-deb", "-x", str(deb), str(dest)],
        what=f"extracting {deb.name}",
        hint=f"delete {deb} so it is downloaded again",
    )
