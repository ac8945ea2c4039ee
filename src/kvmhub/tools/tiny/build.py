"""Build the kvmhub tiny appliance: a small bootable qcow2 made from Debian packages, offline.

The disk is one whole-disk FAT filesystem booted by syslinux. It holds the Debian cloud kernel and a
busybox initramfs carrying the kernel's virtio modules, qemu-guest-agent (with the shared libraries it
needs, all taken from Debian's packages), dropbear and the boot scripts in ``files/``. Inputs are
fetched with ``apt-get download``; the result is cached under ``<cache_dir>/tiny/`` and keyed on the
exact .deb files and on this builder's own files, so it is rebuilt only when one of them changes.
The Debian package handling lives in ``debs``, the staging of the initramfs tree in ``stage``.

What the guest does (other kvmhub code relies on these exact strings, each at the start of a ttyS0 line):

* ``KVMHUB-BOOTED`` once userspace runs; the FAT boot disk is then mounted read-write at /mnt/disk.
* ``KVMHUB-HOSTNAME <name>`` after reading the NoCloud seed (a disk labelled ``cidata``): user-data
  ``hostname``/``fqdn``, else meta-data ``local-hostname``, else ``tiny``.
* ``KVMHUB-NETWORK <iface> <ipv4>`` for each NIC that got a DHCP lease (udhcpc sends the hostname) or
  a static address from the seed's network-config (version 2 ``ethernets``, or version 1 ``physical``:
  addresses, gateway, routes, name servers, ``set-name``); with a network-config only the NICs it names
  are configured, without one every NIC asks DHCP.
* ``KVMHUB-READY`` after ``ssh_authorized_keys`` (top level and per user, all for root), root's
  password (``users`` entry for root, else top-level ``password``; written to /etc/shadow as a crypt
  hash, and ttyS0 then asks for a login), ``write_files`` and ``runcmd`` (once per instance-id) were
  applied; also printed without a seed.
* ``KVMHUB-POWEROFF`` just before powering off (ACPI power button, guest-shutdown, ``poweroff``).

qemu-ga runs on the virtio-serial port ``org.qemu.guest_agent.0``, dropbear on port 22 (keys only)
and a root shell on ttyS0.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kvmhub.errors import HostProblem, InvalidInput
from kvmhub.tools.tiny._proc import locked, run
from kvmhub.tools.tiny.cpio import CpioEntry, entries_from_tree, write_initramfs
from kvmhub.tools.tiny.debs import KERNELS, Deb, dpkg_extract, fetch, print_uris, resolve_debs, resolve_packages
from kvmhub.tools.tiny.stage import FILES_DIR, find_kernel, stage_modules, stage_userland

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

_DISK_SIZE_KIB = 128 * 1024
_FAT_VOLUME_ID = "4b564d48"
_DISK_STAMP = "kvmhub-tiny"

_HERE = Path(__file__).parent
# Every module of this builder: their contents feed the cache key, so list any new module here too.
_BUILDER_SOURCES = tuple(_HERE / name for name in ("build.py", "cpio.py", "debs.py", "stage.py", "_proc.py"))

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

_DEVICES = (
    CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev_major=5, rdev_minor=1),
    CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev_major=1, rdev_minor=3),
    CpioEntry("dev/ttyS0", stat.S_IFCHR | 0o600, rdev_major=4, rdev_minor=64),
)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- public API


def build_tiny_image(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    force: bool = False,
    progress: Progress | None = None,
    kernel: str = "cloud",
) -> Path:
    """Build (or reuse) the tiny appliance and return the path of its qcow2.

    The image is ``<cache_dir>/tiny/tiny-<key>.qcow2`` where ``key`` hashes the exact Debian packages and
    this builder's files; ``<cache_dir>/tiny/tiny.qcow2`` is a symlink to the newest one. ``kernel`` picks
    Debian's kernel (:data:`KERNELS`): ``cloud`` (small, the default) or ``generic`` (it also has 9p and
    vmgenid), whose images are ``tiny-generic-<key>.qcow2`` and ``tiny-generic.qcow2``. The image is a
    base image: boot it through an overlay (``qemu-img create -f qcow2 -b ... -F qcow2``), never directly.
    ``progress`` is called with each phase name ("resolve packages", "fetch packages", "extract
    packages", "kernel modules", "initramfs", "disk image", "done").
    """
    report: Progress = progress or _no_progress
    _require_tools(_HOST_TOOLS)
    if kernel not in KERNELS:
        raise InvalidInput(f"unknown kernel flavour {kernel!r}", hint=f"one of: {', '.join(KERNELS)}")
    prefix = "tiny" if kernel == "cloud" else f"tiny-{kernel}"
    tiny_dir = _prepare_dir(Path(cache_dir) / "tiny")
    with locked(tiny_dir):
        report("resolve packages")
        debs = resolve_debs(KERNELS[kernel])
        key = _cache_key(debs)
        image = tiny_dir / f"{prefix}-{key}.qcow2"
        if image.is_file() and not force:
            _point_latest(tiny_dir, image, prefix)
            report("done")
            return image

        report("fetch packages")
        deb_paths = fetch(tiny_dir / ("debs" if kernel == "cloud" else f"debs-{kernel}"), debs)
        with tempfile.TemporaryDirectory(prefix="build-", dir=tiny_dir) as tmp:
            work = Path(tmp)
            report("extract packages")
            kernel_pkg = next(d for d in debs if d.package.startswith("linux-image-"))
            kroot = work / "kernel"
            proot = work / "pkgs"
            dpkg_extract(deb_paths[kernel_pkg.package], kroot)
            for deb in debs:
                if deb is not kernel_pkg:
                    dpkg_extract(deb_paths[deb.package], proot)
            vmlinuz, kver, modules_base = find_kernel(kroot)

            stage = work / "root"
            report("kernel modules")
            stage_modules(modules_base, kver, stage)

            report("initramfs")
            stage_userland(proot, stage)
            initrd = work / "initrd.gz"
            write_initramfs(initrd, _with_devices(entries_from_tree(stage)))

            report("disk image")
            _make_disk(work, vmlinuz, initrd, image)
        _point_latest(tiny_dir, image, prefix)
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
    with locked(tiny_dir):
        report("resolve packages")
        kernel_pkg = resolve_packages()[0]
        debs = print_uris([kernel_pkg, "busybox-static"])
        key = _cache_key(debs)
        cached = tiny_dir / f"probe-{key}"
        if not (cached / "initrd.gz").is_file():
            report("fetch packages")
            paths = fetch(tiny_dir / "debs", debs, prune=False)
            report("initramfs")
            with tempfile.TemporaryDirectory(prefix="probe-", dir=tiny_dir) as tmp:
                work = Path(tmp)
                out = work / "out"
                out.mkdir()
                dpkg_extract(paths[kernel_pkg], work / "kernel")
                dpkg_extract(paths["busybox-static"], work / "pkgs")
                vmlinuz, _kver, _base = find_kernel(work / "kernel")
                shutil.copyfile(vmlinuz, out / "vmlinuz")
                busybox = (work / "pkgs" / "bin" / "busybox").read_bytes()
                init = (FILES_DIR / "probe-init").read_bytes()
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




# --------------------------------------------------------------------------- cache key, initramfs


def _cache_key(debs: Sequence[Deb]) -> str:
    h = hashlib.sha256()
    for deb in sorted(debs, key=lambda d: d.filename):
        h.update(f"{deb.filename} {deb.sha256}\n".encode())
    for source in sorted([*_BUILDER_SOURCES, *FILES_DIR.iterdir()]):
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()[:16]


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
    run(
        ["mkfs.vfat", "-C", "-n", "KVMHUB", "-i", _FAT_VOLUME_ID, str(raw), str(_DISK_SIZE_KIB)],
        what="mkfs.vfat",
        hint=hint,
    )
    run(["syslinux", "--install", str(raw)], what="syslinux --install", hint=hint)
    cfg = work / "syslinux.cfg"
    cfg.write_text(_syslinux_cfg())
    stamp = work / _DISK_STAMP
    stamp.write_text(
        "kvmhub tiny appliance boot disk; mounted at /mnt/disk in the guest.\n"
        f"built {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
    )
    for src, name in ((vmlinuz, "vmlinuz"), (initrd, "initrd.gz"), (cfg, "syslinux.cfg"), (stamp, _DISK_STAMP)):
        run(["mcopy", "-o", "-i", str(raw), str(src), f"::{name}"], what=f"mcopy {name}", hint=hint)
    tmp_image = image.with_name(f".{image.name}.tmp")
    tmp_image.unlink(missing_ok=True)
    run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_image)],
        what="qemu-img convert",
        hint=hint,
    )
    tmp_image.chmod(0o644)
    os.replace(tmp_image, image)


def _point_latest(tiny_dir: Path, image: Path, prefix: str = "tiny") -> None:
    link = tiny_dir / f"{prefix}.qcow2"
    tmp = tiny_dir / f".{prefix}.qcow2.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(image.name)
    os.replace(tmp, link)
