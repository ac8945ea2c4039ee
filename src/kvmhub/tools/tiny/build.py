"""Build the kvmhub tiny appliance: a small bootable qcow2 made from Debian packages, offline.

The disk is one whole-disk FAT filesystem booted by syslinux. It holds the Debian cloud kernel and a
busybox initramfs carrying the kernel's virtio modules, qemu-guest-agent (with the shared libraries it
needs, all taken from Debian's packages), dropbear and the boot scripts in ``files/``. Inputs are
fetched with ``apt-get download``; the result is cached under ``<cache_dir>/tiny/`` and keyed on the
exact .deb files and on this builder's own files, so it is rebuilt only when one of them changes.

What the guest does (other kvmhub code relies on these exact strings, each at the start of a ttyS0 line):

* ``KVMHUB-BOOTED`` once userspace runs; the FAT boot disk is then mounted read-write at /mnt/disk.
* ``KVMHUB-HOSTNAME <name>`` after reading the NoCloud seed (a disk labelled ``cidata``): user-data
  ``hostname``/``fqdn``, else meta-data ``local-hostname``, else ``tiny``.
* ``KVMHUB-NETWORK <iface> <ipv4>`` for each NIC that got a DHCP lease (udhcpc sends the hostname).
* ``KVMHUB-READY`` after ``ssh_authorized_keys`` (top level and per user, all for root),
  ``write_files`` and ``runcmd`` (once per instance-id) were applied; also printed without a seed.
* ``KVMHUB-POWEROFF`` just before powering off (ACPI power button, guest-shutdown, ``poweroff``).

qemu-ga runs on the virtio-serial port ``org.qemu.guest_agent.0``, dropbear on port 22 (keys only)
and a root shell on ttyS0.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kvmhub.errors import HostProblem, OperationFailed
from kvmhub.tools.tiny.cpio import CpioEntry, entries_from_tree, write_initramfs

__all__ = [
    "DEFAULT_CACHE_DIR",
    "KERNEL_CMDLINE",
    "MARKERS",
    "build_probe_initramfs",
    "build_tiny_image",
]

DEFAULT_CACHE_DIR = Path("/var/cache/kvmhub")

#: Lines the appliance prints at the start of a line on ttyS0 (the contract described above).
MARKERS = {
    "booted": "KVMHUB-BOOTED",
    "hostname": "KVMHUB-HOSTNAME",
    "network": "KVMHUB-NETWORK",
    "ready": "KVMHUB-READY",
    "poweroff": "KVMHUB-POWEROFF",
    "probe": "KVMHUB-PROBE-OK",
}

KERNEL_CMDLINE = "console=tty0 console=ttyS0,115200n8 quiet panic=10"

_KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
_BASE_PACKAGES = ("busybox-static", "qemu-guest-agent", "dropbear-bin")
# Only these get their library dependencies followed (and only into lib* packages).
_LIB_ROOTS = ("qemu-guest-agent", "dropbear-bin")
_DISK_SIZE_KIB = 128 * 1024
_FAT_VOLUME_ID = "4b564d48"
_DISK_STAMP = "kvmhub-tiny"

_FILES_DIR = Path(__file__).with_name("files")
_BUILDER_SOURCES = (Path(__file__), Path(__file__).with_name("cpio.py"))

_HOST_TOOLS = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "depmod": "kmod",
    "mkfs.vfat": "dosfstools",
    "syslinux": "syslinux",
    "mcopy": "mtools",
    "qemu-img": "qemu-utils",
}

# files/<name> -> (path in the initramfs, mode)
_PLACEMENT: dict[str, tuple[str, int]] = {
    "inittab": ("etc/inittab", 0o644),
    "lib.sh": ("etc/kvmhub/lib.sh", 0o644),
    "rcS": ("etc/kvmhub/rcS", 0o755),
    "cloud-init": ("etc/kvmhub/cloud-init", 0o755),
    "cloud-config.awk": ("etc/kvmhub/cloud-config.awk", 0o644),
    "udhcpc": ("etc/kvmhub/udhcpc", 0o755),
    "qemu-ga": ("etc/kvmhub/qemu-ga", 0o755),
    "acpid": ("etc/kvmhub/acpid", 0o755),
    "shutdown-hook": ("etc/kvmhub/shutdown-hook", 0o755),
    "console": ("etc/kvmhub/console", 0o755),
    "sshd": ("etc/kvmhub/sshd", 0o755),
    "modules": ("etc/kvmhub/modules", 0o644),
    "power-button": ("etc/acpi/PWRF/00000080", 0o755),
    "acpid.conf": ("etc/acpid.conf", 0o644),
    "poweroff": ("sbin/poweroff", 0o755),
    "shutdown": ("sbin/shutdown", 0o755),
    "profile": ("etc/profile", 0o644),
    "passwd": ("etc/passwd", 0o644),
    "group": ("etc/group", 0o644),
    "shells": ("etc/shells", 0o644),
    "os-release": ("etc/os-release", 0o644),
}

_DIRS = (
    "bin", "sbin", "usr/bin", "usr/sbin", "lib/x86_64-linux-gnu", "lib64", "etc/kvmhub", "etc/dropbear",
    "proc", "sys", "dev", "run", "tmp", "mnt/disk", "root", "var/lib", "var/log",
)  # fmt: skip

_DEVICES = (
    CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev_major=5, rdev_minor=1),
    CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev_major=1, rdev_minor=3),
    CpioEntry("dev/ttyS0", stat.S_IFCHR | 0o600, rdev_major=4, rdev_minor=64),
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class _Deb:
    package: str
    filename: str
    sha256: str


# --------------------------------------------------------------------------- public API


def build_tiny_image(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Build (or reuse) the tiny appliance and return the path of its qcow2.

    The image is ``<cache_dir>/tiny/tiny-<key>.qcow2`` where ``key`` hashes the exact Debian packages and
    this builder's files; ``<cache_dir>/tiny/tiny.qcow2`` is a symlink to the newest one. The image is a
    base image: boot it through an overlay (``qemu-img create -f qcow2 -b ... -F qcow2``), never directly.
    ``progress`` is called with each phase name ("resolve packages", "fetch packages", "extract
    packages", "kernel modules", "initramfs", "disk image", "done").
    """
    report: Progress = progress or _no_progress
    _require_tools(_HOST_TOOLS)
    tiny_dir = _prepare_dir(Path(cache_dir) / "tiny")
    with _locked(tiny_dir):
        report("resolve packages")
        debs = _resolve_debs()
        key = _cache_key(debs)
        image = tiny_dir / f"tiny-{key}.qcow2"
        if image.is_file() and not force:
            _point_latest(tiny_dir, image)
            report("done")
            return image

        report("fetch packages")
        deb_paths = _fetch(tiny_dir / "debs", debs)
        with tempfile.TemporaryDirectory(prefix="build-", dir=tiny_dir) as tmp:
            work = Path(tmp)
            report("extract packages")
            kernel_pkg = next(d for d in debs if d.package.startswith("linux-image-"))
            kroot = work / "kernel"
            proot = work / "pkgs"
            _dpkg_extract(deb_paths[kernel_pkg.package], kroot)
            for deb in debs:
                if deb is not kernel_pkg:
                    _dpkg_extract(deb_paths[deb.package], proot)
            vmlinuz, kver, modules_base = _find_kernel(kroot)

            stage = work / "root"
            report("kernel modules")
            _stage_modules(modules_base, kver, stage)

            report("initramfs")
            _stage_userland(proot, stage)
            initrd = work / "initrd.gz"
            write_initramfs(initrd, _with_devices(entries_from_tree(stage)))

            report("disk image")
            _make_disk(work, vmlinuz, initrd, image)
        _point_latest(tiny_dir, image)
    report("done")
    return image


def build_probe_initramfs(
    dest: Path,
    *,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: Progress | None = None,
) -> tuple[Path, Path]:
    """Write a kernel and a minimal initramfs to the directory ``dest``; return (kernel, initramfs).

    Booted with ``-kernel K -initrd I -append "console=ttyS0"``, the initramfs prints
    ``KVMHUB-PROBE-OK`` on ttyS0 and powers the machine off at once; the host check uses it to find out
    whether KVM (or TCG) can run a guest. It uses the same Debian kernel as the tiny appliance.
    """
    report: Progress = progress or _no_progress
    _require_tools({k: v for k, v in _HOST_TOOLS.items() if k in ("apt-get", "apt-cache", "dpkg-deb")})
    tiny_dir = _prepare_dir(Path(cache_dir) / "tiny")
    with _locked(tiny_dir):
        report("resolve packages")
        kernel_pkg = _resolve_packages()[0]
        debs = _print_uris([kernel_pkg, "busybox-static"])
        key = _cache_key(debs)
        cached = tiny_dir / f"probe-{key}"
        if not (cached / "initrd.gz").is_file():
            report("fetch packages")
            paths = _fetch(tiny_dir / "debs", debs, prune=False)
            report("initramfs")
            with tempfile.TemporaryDirectory(prefix="probe-", dir=tiny_dir) as tmp:
                work = Path(tmp)
                out = work / "out"
                out.mkdir()
                _dpkg_extract(paths[kernel_pkg], work / "kernel")
                _dpkg_extract(paths["busybox-static"], work / "pkgs")
                vmlinuz, _kver, _base = _find_kernel(work / "kernel")
                shutil.copyfile(vmlinuz, out / "vmlinuz")
                busybox = (work / "pkgs" / "bin" / "busybox").read_bytes()
                init = (_FILES_DIR / "probe-init").read_bytes()
                entries = [
                    CpioEntry("bin", stat.S_IFDIR | 0o755),
                    CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox),
                    CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
                    CpioEntry("dev", stat.S_IFDIR | 0o755),
                    *_DEVICES,
                    CpioEntry("init", stat.S_IFREG | 0o755, init),
                ]
                write_initramfs(out / "initrd.gz", entries)
                shutil.rmtree(cached, ignore_errors=True)
                out.rename(cached)
            # Callers get copies, so older probe builds are never in use.
            for stale in tiny_dir.glob("probe-*"):
                if stale != cached:
                    shutil.rmtree(stale, ignore_errors=True)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    kernel, initramfs = dest / "vmlinuz", dest / "initrd.gz"
    if dest.resolve() != cached.resolve():
        shutil.copyfile(cached / "vmlinuz", kernel)
        shutil.copyfile(cached / "initrd.gz", initramfs)
    report("done")
    return kernel, initramfs


# --------------------------------------------------------------------------- host helpers


def _no_progress(_phase: str) -> None:
    return None


def _require_tools(tools: dict[str, str]) -> None:
    missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
    if missing:
        raise HostProblem(
            "tools needed to build the tiny appliance are missing",
            cause="not installed: " + ", ".join(missing),
            hint="apt-get install " + " ".join(missing),
        )


def _prepare_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HostProblem(
            f"cannot create the image cache {path}",
            cause=exc.strerror or type(exc).__name__,
            hint="run as root, or pass a writable cache_dir",
            original=str(exc),
        ) from exc
    return path


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builders sharing a cache (parallel test workers, two CLI runs)."""
    with (directory / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
    argv: Sequence[str],
    *,
    what: str,
    hint: str,
    cwd: Path | None = None,
    timeout: float = 300,
) -> str:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(
            f"{what}: {argv[0]} did not finish in {timeout:.0f} s",
            cause="the command hung",
            hint=hint,
        ) from exc
    except OSError as exc:
        raise HostProblem(f"{what}: cannot run {argv[0]}", cause=str(exc), hint=hint) from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise OperationFailed(
            f"{what} failed ({argv[0]} exited with {done.returncode})",
            cause=tail[-1] if tail else None,
            hint=hint,
            original="\n".join(tail),
        )
    return done.stdout


# --------------------------------------------------------------------------- packages

_APT_HINT = (
    "check that the Debian archive is reachable (apt-get update must work), or put the .deb files into {debs} by hand"
)
_updated = False


def _apt(argv: Sequence[str], what: str, cwd: Path | None = None) -> str:
    """Run an apt command; on failure refresh the package lists once and try again."""
    global _updated
    try:
        return _run(argv, what=what, cwd=cwd, hint="run: apt-get update")
    except OperationFailed:
        if _updated:
            raise
    _updated = True
    _run(
        ["apt-get", "update"],
        what="apt-get update",
        hint="check /etc/apt/sources.list and that the Debian mirror is reachable",
        timeout=600,
    )
    return _run(argv, what=what, cwd=cwd, hint="check /etc/apt/sources.list, then run: apt-get update")


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


def _resolve_packages() -> list[str]:
    """The kernel package, the base packages and the library packages qemu-ga and dropbear need."""
    deps = _depends([_KERNEL_META_PACKAGE, *_BASE_PACKAGES])
    kernel = next((d for d in deps.get(_KERNEL_META_PACKAGE, []) if d.startswith("linux-image-")), None)
    if kernel is None:
        raise OperationFailed(
            f"cannot tell which kernel {_KERNEL_META_PACKAGE} stands for",
            cause="apt-cache depends listed no linux-image-* dependency",
            hint="run: apt-get update, then apt-cache depends " + _KERNEL_META_PACKAGE,
        )
    libs: list[str] = []
    todo = list(_LIB_ROOTS)
    while todo:
        for dep in deps.get(todo.pop(), []):
            if _is_library(dep) and dep not in libs:
                libs.append(dep)
                todo.append(dep)
    return [kernel, *_BASE_PACKAGES, *sorted(libs)]


def _print_uris(packages: Sequence[str]) -> list[_Deb]:
    out = _apt(["apt-get", "download", "--print-uris", *packages], "apt-get download --print-uris")
    found: dict[str, _Deb] = {}
    for line in out.splitlines():
        m = re.match(r"'[^']+'\s+(\S+\.deb)\s+\d+\s+SHA256:([0-9a-f]{64})", line)
        if m:
            filename = m.group(1)
            package = filename.split("_", 1)[0]
            found[package] = _Deb(package, filename, m.group(2))
    missing = [p for p in packages if p not in found]
    if missing:
        raise OperationFailed(
            "apt did not offer every package the tiny appliance needs",
            cause="no download for: " + ", ".join(missing),
            hint="run: apt-get update (the package lists may be stale or missing)",
        )
    return [found[p] for p in packages]


def _resolve_debs() -> list[_Deb]:
    return _print_uris(_resolve_packages())


def _cache_key(debs: Sequence[_Deb]) -> str:
    h = hashlib.sha256()
    for deb in sorted(debs, key=lambda d: d.filename):
        h.update(f"{deb.filename} {deb.sha256}\n".encode())
    for source in sorted([*_BUILDER_SOURCES, *_FILES_DIR.iterdir()]):
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(debs_dir: Path, debs: Sequence[_Deb], *, prune: bool = True) -> dict[str, Path]:
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


def _dpkg_extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        ["dpkg-deb", "-x", str(deb), str(dest)],
        what=f"extracting {deb.name}",
        hint=f"delete {deb} so it is downloaded again",
    )


# --------------------------------------------------------------------------- kernel


def _find_kernel(kroot: Path) -> tuple[Path, str, Path]:
    """Return (vmlinuz, kernel version, base directory for depmod -b)."""
    kernels = sorted((kroot / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise OperationFailed(
            "the kernel package holds no /boot/vmlinuz-*",
            cause=f"{_KERNEL_META_PACKAGE} may have changed layout",
            hint="report this; the tiny appliance expects a Debian linux-image package",
        )
    vmlinuz = kernels[-1]
    kver = vmlinuz.name.removeprefix("vmlinuz-")
    for base in (kroot, kroot / "usr"):
        if (base / "lib" / "modules" / kver).is_dir():
            return vmlinuz, kver, base
    raise OperationFailed(
        f"the kernel package holds no modules for {kver}",
        cause="lib/modules/<version> is missing",
        hint="report this; the tiny appliance expects a Debian linux-image package",
    )


def _wanted_modules() -> list[str]:
    lines = (_FILES_DIR / "modules").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _stage_modules(base: Path, kver: str, stage: Path) -> None:
    """Copy the wanted modules and everything they depend on, then run depmod over the result."""
    _run(["depmod", "-b", str(base), kver], what="depmod (kernel package)", hint="apt-get install kmod")
    moddir = base / "lib" / "modules" / kver
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
        by_name[Path(target).name.removesuffix(".ko").replace("-", "_")] = target
    needed: set[str] = set()
    todo = [by_name[n.replace("-", "_")] for n in _wanted_modules() if n.replace("-", "_") in by_name]
    while todo:
        mod = todo.pop()
        if mod not in needed:
            needed.add(mod)
            todo.extend(deps.get(mod, []))
    out = stage / "lib" / "modules" / kver
    for rel in sorted(needed):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(moddir / rel, out / rel)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (moddir / meta).is_file():
            shutil.copyfile(moddir / meta, out / meta)
    _run(["depmod", "-b", str(stage), kver], what="depmod (initramfs)", hint="apt-get install kmod")


# --------------------------------------------------------------------------- userland


def _elf_deps(path: Path) -> tuple[str | None, list[str]]:
    """The program interpreter and DT_NEEDED names of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None, []
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    interp: str | None = None
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
        elif p_type == 3:
            interp = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return interp, []
    needed_offsets: list[int] = []
    strtab_vaddr = 0
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 1:
            needed_offsets.append(val)
        elif tag == 5:
            strtab_vaddr = val
    strtab = next((strtab_vaddr - va + fo for va, fo, sz in loads if va <= strtab_vaddr < va + sz), None)
    if strtab is None:
        return interp, []
    names = [data[strtab + o : data.index(b"\0", strtab + o)].decode() for o in needed_offsets]
    return interp, names


def _resolve_in(root: Path, abs_path: str) -> Path | None:
    """Follow ``abs_path`` inside the extracted tree ``root`` (absolute symlinks stay inside it)."""
    path = root / abs_path.lstrip("/")
    for _ in range(16):
        if path.is_symlink():
            target = os.readlink(path)
            path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
            continue
        return path if path.is_file() else None
    return None


_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


def _copy_with_libs(proot: Path, binaries: dict[str, str], stage: Path) -> None:
    """Copy each binary (package path -> initramfs path) and the shared libraries it loads."""
    libdir = stage / "lib" / "x86_64-linux-gnu"
    todo: list[Path] = []
    for src, dest in binaries.items():
        path = _resolve_in(proot, src)
        if path is None:
            raise OperationFailed(
                f"{src} is missing from the extracted packages",
                cause="a Debian package changed its layout",
                hint="report this with the output of: dpkg-deb -c <the package>.deb",
            )
        (stage / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, stage / dest)
        (stage / dest).chmod(0o755)
        todo.append(path)
    copied: set[str] = set()
    while todo:
        interp, needed = _elf_deps(todo.pop())
        if interp and interp not in copied:
            copied.add(interp)
            real = _resolve_in(proot, interp)
            if real is None:
                raise OperationFailed(
                    f"the dynamic loader {interp} is not in the libc6 package",
                    hint="report this; the tiny appliance expects Debian's amd64 libc6",
                )
            name = Path(interp).name
            shutil.copyfile(real, libdir / name)
            (libdir / name).chmod(0o755)
            link = stage / interp.lstrip("/")
            if link.parent != libdir:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(f"/lib/x86_64-linux-gnu/{name}")
        for soname in needed:
            if soname in copied:
                continue
            copied.add(soname)
            real = next((p for d in _LIB_DIRS if (p := _resolve_in(proot, f"{d}/{soname}")) is not None), None)
            if real is None:
                raise OperationFailed(
                    f"shared library {soname} is not in any downloaded package",
                    cause="Debian's dependencies for qemu-guest-agent or dropbear changed",
                    hint="report this; the builder follows the lib* Depends of those packages",
                )
            shutil.copyfile(real, libdir / soname)
            todo.append(real)


def _stage_userland(proot: Path, stage: Path) -> None:
    for d in _DIRS:
        (stage / d).mkdir(parents=True, exist_ok=True)
    (stage / "root").chmod(0o700)
    (stage / "tmp").chmod(0o1777)
    (stage / "var" / "run").symlink_to("/run")
    (stage / "init").symlink_to("bin/busybox")
    (stage / "etc" / "mtab").symlink_to("/proc/mounts")

    busybox = proot / "bin" / "busybox"
    shutil.copyfile(busybox, stage / "bin" / "busybox")
    (stage / "bin" / "busybox").chmod(0o755)
    applets = _run([str(busybox), "--list-full"], what="listing busybox applets", hint="the busybox-static .deb")
    for applet in applets.split():
        link = stage / applet
        if applet in ("linuxrc", "bin/busybox") or link.name in ("poweroff", "shutdown"):
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")

    _copy_with_libs(
        proot,
        {
            "/usr/sbin/qemu-ga": "usr/sbin/qemu-ga",
            "/usr/sbin/dropbear": "usr/sbin/dropbear",
            "/usr/bin/dropbearkey": "usr/bin/dropbearkey",
        },
        stage,
    )
    (stage / "usr" / "lib").mkdir(parents=True, exist_ok=True)
    (stage / "usr" / "lib" / "x86_64-linux-gnu").symlink_to("/lib/x86_64-linux-gnu")

    for name, (dest, mode) in _PLACEMENT.items():
        target = stage / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_FILES_DIR / name, target)
        target.chmod(mode)


def _with_devices(entries: Iterator[CpioEntry]) -> Iterator[CpioEntry]:
    for entry in entries:
        yield entry
        if entry.path == "dev":
            yield from _DEVICES


# --------------------------------------------------------------------------- disk


def _syslinux_cfg() -> str:
    return (
        "SERIAL 0 115200\n"
        "DEFAULT tiny\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL tiny\n"
        "  KERNEL vmlinuz\n"
        "  INITRD initrd.gz\n"
        f"  APPEND {KERNEL_CMDLINE}\n"
    )


def _make_disk(work: Path, vmlinuz: Path, initrd: Path, image: Path) -> None:
    raw = work / "disk.raw"
    hint = "apt-get install dosfstools syslinux mtools qemu-utils"
    _run(
        ["mkfs.vfat", "-C", "-n", "KVMHUB", "-i", _FAT_VOLUME_ID, str(raw), str(_DISK_SIZE_KIB)],
        what="mkfs.vfat",
        hint=hint,
    )
    _run(["syslinux", "--install", str(raw)], what="syslinux --install", hint=hint)
    cfg = work / "syslinux.cfg"
    cfg.write_text(_syslinux_cfg())
    stamp = work / _DISK_STAMP
    stamp.write_text(
        "kvmhub tiny appliance boot disk; mounted at /mnt/disk in the guest.\n"
        f"built {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
    )
    for src, name in ((vmlinuz, "vmlinuz"), (initrd, "initrd.gz"), (cfg, "syslinux.cfg"), (stamp, _DISK_STAMP)):
        _run(["mcopy", "-o", "-i", str(raw), str(src), f"::{name}"], what=f"mcopy {name}", hint=hint)
    tmp_image = image.with_name(f".{image.name}.tmp")
    tmp_image.unlink(missing_ok=True)
    _run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_image)],
        what="qemu-img convert",
        hint=hint,
    )
    tmp_image.chmod(0o644)
    os.replace(tmp_image, image)


def _point_latest(tiny_dir: Path, image: Path) -> None:
    link = tiny_dir / "tiny.qcow2"
    tmp = tiny_dir / ".tiny.qcow2.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(image.name)
    os.replace(tmp, link)
