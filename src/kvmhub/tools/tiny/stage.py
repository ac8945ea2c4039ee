"""Staging the tiny appliance's initramfs tree from the extracted Debian packages.

Into a staging directory that ``cpio.entries_from_tree`` then turns into the initramfs go: the kernel
modules listed in ``files/modules`` with their dependencies, busybox and its applet links, qemu-ga and
dropbear with the shared libraries they load (found by reading their ELF headers), and the guest files
in ``files/``.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from kvmhub.errors import OperationFailed
from kvmhub.tools.tiny._proc import run
from kvmhub.tools.tiny.debs import KERNEL_META_PACKAGE

__all__ = ["FILES_DIR", "find_kernel", "stage_modules", "stage_userland"]

FILES_DIR = Path(__file__).with_name("files")

# files/<name> -> (path in the initramfs, mode)
_PLACEMENT: dict[str, tuple[str, int]] = {
    "inittab": ("etc/inittab", 0o644),
    "lib.sh": ("etc/kvmhub/lib.sh", 0o644),
    "rcS": ("etc/kvmhub/rcS", 0o755),
    "cloud-init": ("etc/kvmhub/cloud-init", 0o755),
    "cloud-config.awk": ("etc/kvmhub/cloud-config.awk", 0o644),
    "network-config.awk": ("etc/kvmhub/network-config.awk", 0o644),
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


# --------------------------------------------------------------------------- kernel


def find_kernel(kroot: Path) -> tuple[Path, str, Path]:
    """Return (vmlinuz, kernel version, base directory for depmod -b)."""
    kernels = sorted((kroot / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise OperationFailed(
            "the kernel package holds no /boot/vmlinuz-*",
            cause=f"{KERNEL_META_PACKAGE} may have changed layout",
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
    lines = (FILES_DIR / "modules").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def stage_modules(base: Path, kver: str, stage: Path) -> None:
    """Copy the wanted modules and everything they depend on, then run depmod over the result."""
    run(["depmod", "-b", str(base), kver], what="depmod (kernel package)", hint="apt-get install kmod")
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
    run(["depmod", "-b", str(stage), kver], what="depmod (initramfs)", hint="apt-get install kmod")


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


def stage_userland(proot: Path, stage: Path) -> None:
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
    applets = run([str(busybox), "--list-full"], what="listing busybox applets", hint="the busybox-static .deb")
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
        shutil.copyfile(FILES_DIR / name, target)
        target.chmod(mode)
