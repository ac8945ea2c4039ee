"""Build a Debian 12 cloud-style qcow2 from Debian packages: what a real distribution's cloud image does, offline.

``debootstrap --variant=minbase`` of bookworm with cloud-init, openssh-server, qemu-guest-agent, the cloud kernel
and ifupdown + a DHCP client (cloud-init renders its network config for them, as on Debian's cloud images).
cloud-init's own Debian configuration makes ``debian`` the default user (keys, passwordless sudo);
``datasource_list`` is cut to NoCloud, ConfigDrive and None, so it never waits for network metadata services.
SSH host keys and the machine-id are removed: each VM makes its own at first boot. Documentation, man pages,
translations and apt's caches are dropped.

No loop device is needed: the disk is assembled in a raw file (an MBR with syslinux's boot code, a FAT boot
partition with the kernel, its initramfs and syslinux, and an ext4 root made with ``mkfs.ext4 -d`` at its
offset), then converted to qcow2. The result is cached under ``<cache_dir>/debian/`` and keyed on the exact
packages apt offers for the list below and on this file, so it is rebuilt only when one of them changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from kvmhub.errors import HostProblem, OperationFailed
from kvmhub.tools.tiny._proc import locked, run
from kvmhub.tools.tiny.debs import print_uris

__all__ = ["DEBIAN_USER", "DEFAULT_CACHE_DIR", "OS_VARIANT", "PACKAGES", "build_debian_image"]

DEFAULT_CACHE_DIR = Path("/var/cache/kvmhub")
DEBIAN_USER = "debian"  # cloud-init's default user on Debian (its /etc/cloud/cloud.cfg)
OS_VARIANT = "debian12"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
ROOT_LABEL = "debian-root"
PACKAGES = (
    "systemd-sysv", "udev", "linux-image-cloud-amd64", "cloud-init", "openssh-server", "qemu-guest-agent",
    "ifupdown", "isc-dhcp-client", "sudo", "netbase",
    "python3-cffi-backend",  # debootstrap does not resolve the virtual package python3-cryptography needs
)  # fmt: skip
KERNEL_CMDLINE = f"root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200n8"

_SECTOR = 512
_BOOT_START = 2048  # sectors: partitions aligned on 1 MiB
_BOOT_SECTORS = 64 * 2048
_ROOT_MIB = 1536
_MBR_CODE = Path("/usr/lib/syslinux/mbr/mbr.bin")
_HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "apt-get": "apt",
    "sfdisk": "fdisk",
    "mkfs.fat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
}

# Files written into the root, relative to it.
_FILES = {
    # C.UTF-8 is built in: no locales package, no locale-gen at first boot. First boot under TCG is kept short:
    # no RSA/DSA host keys to generate, no grub (syslinux boots it), no host keys printed to the console.
    "etc/cloud/cloud.cfg.d/90-kvmhub.cfg": "datasource_list: [ NoCloud, ConfigDrive, None ]\n"
    "locale: C.UTF-8\nssh_genkeytypes: [ ed25519, ecdsa ]\ngrub_dpkg:\n  enabled: false\n"
    "ssh:\n  emit_keys_to_console: false\n",
    "etc/default/locale": "LANG=C.UTF-8\n",
    "etc/fstab": f"LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 0\n",  # no fsck: each VM's root is a new overlay
    "etc/hostname": "debian\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    "etc/machine-id": "",
    "etc/dpkg/dpkg.cfg.d/90-kvmhub-nodoc": "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n"
    "path-exclude=/usr/share/info/*\npath-exclude=/usr/share/locale/*\npath-include=/usr/share/locale/locale.alias\n",
    "etc/apt/apt.conf.d/90-kvmhub-norecommends": 'APT::Install-Recommends "false";\n',
}
# Globs removed from the root: per-machine identity and what a small image does without.
_REMOVE = (
    "etc/ssh/ssh_host_*", "var/lib/dbus/machine-id", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*_Packages", "var/lib/apt/lists/*_Release*", "usr/share/doc/*", "usr/share/man/*",
    "usr/share/info/*", "var/log/*.log", "var/log/apt/*", "debootstrap",
)  # fmt: skip
_KEEP_LOCALES = {"locale.alias"}
# Units masked: e2fsprogs' scrubbing and the spare text consoles only cost a TCG guest's first minute.
_MASKED = ("e2scrub_reap.service", "e2scrub_all.timer", "getty-static.service", "apt-daily.timer",
           "apt-daily-upgrade.timer")

Progress = Callable[[str], None]


def build_debian_image(
    cache_dir: Path = DEFAULT_CACHE_DIR,
    *,
    force: bool = False,
    mirror: str = MIRROR,
    progress: Progress | None = None,
) -> Path:
    """Build (or reuse) the Debian 12 cloud-style image and return the path of its qcow2.

    The image is ``<cache_dir>/debian/debian12-<key>.qcow2``; ``debian12.qcow2`` beside it links to the newest.
    Boot it through an overlay, never directly. ``progress`` is called with each phase name ("resolve
    packages", "debootstrap", "configure", "disk image", "done"). Raises HostProblem when a tool is missing,
    OperationFailed when debootstrap or a disk tool fails.
    """
    report: Progress = progress or (lambda _phase: None)
    missing = sorted({pkg for tool, pkg in _HOST_TOOLS.items() if shutil.which(tool) is None})
    if missing or not _MBR_CODE.is_file():
        raise HostProblem("tools needed to build the Debian image are missing",
                          cause="not installed: " + ", ".join(missing or ["syslinux-common"]),
                          hint="apt-get install " + " ".join(missing or ["syslinux-common"]))
    out_dir = Path(cache_dir) / "debian"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HostProblem(f"cannot create the image cache {out_dir}", cause=exc.strerror,
                          hint="run as root, or pass a writable cache directory") from exc
    with locked(out_dir):
        report("resolve packages")
        key = cache_key(mirror)
        image = out_dir / f"{OS_VARIANT}-{key}.qcow2"
        if force or not image.is_file():
            with tempfile.TemporaryDirectory(prefix="build-", dir=out_dir) as tmp:
                work = Path(tmp)
                root = work / "root"
                report("debootstrap")
                debs = (out_dir / "debs").resolve()  # kept: a rebuild downloads only what changed
                debs.mkdir(exist_ok=True)
                log = out_dir / "debootstrap.log"
                try:
                    run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
                         "--include=" + ",".join(PACKAGES), SUITE, str(root), mirror],
                        what="debootstrap", timeout=1200, hint=f"check that {mirror} is reachable; read {log}")
                except OperationFailed:
                    with contextlib.suppress(OSError):  # the target goes with the temporary directory
                        shutil.copyfile(root / "debootstrap" / "debootstrap.log", log)
                    raise
                report("configure")
                configure_root(root)
                report("disk image")
                make_disk(work, root, image)
            for stale in out_dir.glob(f"{OS_VARIANT}-*.qcow2"):
                if stale != image:
                    stale.unlink(missing_ok=True)
        link = out_dir / f"{OS_VARIANT}.qcow2"
        tmp_link = out_dir / f".{OS_VARIANT}.qcow2.link"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(image.name)
        os.replace(tmp_link, link)
    report("done")
    return image


def cache_key(mirror: str = MIRROR) -> str:
    """A hash of the exact .deb files apt offers for :data:`PACKAGES`, the mirror and this builder's source."""
    h = hashlib.sha256(f"{SUITE} {mirror}\n".encode())
    for deb in print_uris(PACKAGES):
        h.update(f"{deb.filename} {deb.sha256}\n".encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def configure_root(root: Path) -> None:
    """Make the debootstrapped ``root`` a cloud image: kvmhub's cloud-init settings, no per-machine identity."""
    for rel, text in _FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pattern in _REMOVE:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for unit in _MASKED:
        masked = root / "etc/systemd/system" / unit
        masked.parent.mkdir(parents=True, exist_ok=True)
        masked.unlink(missing_ok=True)
        masked.symlink_to("/dev/null")
    locales = root / "usr/share/locale"
    for path in locales.iterdir() if locales.is_dir() else ():
        if path.name not in _KEEP_LOCALES:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def make_disk(work: Path, root: Path, image: Path) -> None:
    """Assemble the bootable disk from ``root`` in a raw file under ``work`` and convert it to ``image``."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise OperationFailed("debootstrap installed no kernel", cause=f"no vmlinuz-* in {root / 'boot'}",
                              hint="check that linux-image-cloud-amd64 is installable: apt-cache policy "
                              "linux-image-cloud-amd64")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    raw = work / "disk.raw"
    root_start = _BOOT_START + _BOOT_SECTORS
    with raw.open("wb") as fh:
        fh.truncate((root_start + _ROOT_MIB * 2048) * _SECTOR)
    hint = "apt-get install fdisk dosfstools mtools syslinux syslinux-common e2fsprogs qemu-utils"
    table = (f"label: dos\nlabel-id: 0x4b564d44\nstart={_BOOT_START}, size={_BOOT_SECTORS}, type=c, bootable\n"
             f"start={root_start}, type=83\n")
    _run_input(["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)], table, what="sfdisk", hint=hint)
    with raw.open("r+b") as fh:
        fh.write(_MBR_CODE.read_bytes()[:440])
    offset = _BOOT_START * _SECTOR
    run(["mkfs.fat", "-F", "16", "-n", "BOOT", "-h", str(_BOOT_START), "--offset", str(_BOOT_START), str(raw),
         str(_BOOT_SECTORS // 2)], what="mkfs.fat", hint=hint)
    run(["syslinux", "--install", "--offset", str(offset), str(raw)], what="syslinux --install", hint=hint)
    cfg = work / "syslinux.cfg"
    cfg.write_text(f"SERIAL 0 115200\nDEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n  KERNEL vmlinuz\n"
                   f"  INITRD initrd.img\n  APPEND {KERNEL_CMDLINE}\n")
    for src, name in ((kernels[-1], "vmlinuz"), (initrd, "initrd.img"), (cfg, "syslinux.cfg")):
        run(["mcopy", "-o", "-i", f"{raw}@@{offset}", str(src), f"::{name}"], what=f"mcopy {name}", hint=hint)
    run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), "-E", f"offset={root_start * _SECTOR}",
         str(raw), f"{_ROOT_MIB}M"], what="mkfs.ext4 -d", hint=hint, timeout=600)
    tmp_image = image.with_name(f".{image.name}.tmp")
    tmp_image.unlink(missing_ok=True)
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp_image)], what="qemu-img convert",
        hint=hint, timeout=600)
    tmp_image.chmod(0o644)
    os.replace(tmp_image, image)


def _run_input(argv: list[str], text: str, *, what: str, hint: str) -> None:
    try:
        done = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise HostProblem(f"{what}: cannot run {argv[0]}", cause=str(exc), hint=hint) from exc
    if done.returncode != 0:
        raise OperationFailed(f"{what} failed ({argv[0]} exited with {done.returncode})",
                              cause=(done.stderr or done.stdout).strip()[-400:] or None, hint=hint)


