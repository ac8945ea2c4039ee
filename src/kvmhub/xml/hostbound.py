"""What in a domain definition ties it to one host, or would reach into the host that defines it.

Two uses. Before an export, the devices whose hardware cannot travel are named so the export is refused
up front (:func:`unexportable`): PCI/USB/SCSI ``<hostdev>`` and TPM passthrough (hardware of this host); an
emulated ``<tpm>``'s state, kept in the host's swtpm directory by UUID, travels in the archive. A clone on
the same host keeps host devices and TPMs with a warning (:func:`clone_warnings`): a host device can be used
by one running VM at a time, and the clone's TPM starts empty unless its state is copied.

On import or restore-as-new the definition comes from a file anyone could have written; it may hold only
what kvmhub's own export or backup writes (:func:`untrusted_refusals`). Refused: network disks, disk
encryption and auth secrets, host devices and TPM passthrough, ``<filesystem>`` shares of host
directories, NICs on a host bridge or macvtap (``bridge``/``direct``) or other host-side kinds, NIC
scripts and ROM files, character devices on host files or devices, evdev inputs, file-backed memory
devices, firmware, NVRAM templates, ACPI tables, device trees and fw_cfg entries from outside the host's
firmware directories, and QEMU command-line passthrough.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from kvmhub.xml._util import Element

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
FIRMWARE_DIRS = ("/usr/share/OVMF/", "/usr/share/ovmf/", "/usr/share/qemu/", "/usr/share/edk2/",
                 "/usr/share/AAVMF/", "/usr/share/seabios/", "/usr/share/edk2-ovmf/")
_HOST_NICS = ("bridge", "direct", "ethernet", "hostdev", "vhostuser", "vdpa", "server", "client", "mcast",
              "udp", "vds")
_HOST_CHARDEVS = ("file", "dev", "pipe", "unix", "tcp", "udp", "nmdm")


@dataclass(frozen=True)
class HostTie:
    """One thing in a definition bound to (or reaching into) a host."""

    kind: str  # hostdev, tpm, network-disk, secret, filesystem, nic, chardev, file, qemu-commandline, ...
    what: str  # the device, as a user would name it
    why: str


def _desc(el: Element) -> str:
    return etree.tostring(el, encoding="unicode", with_tail=False).split(">", 1)[0] + ">"


def _hostdev_name(dev: Element) -> str:
    kind = dev.get("type") or "?"
    addr = dev.find("source/address")
    vendor, product = dev.find("source/vendor"), dev.find("source/product")
    if kind == "pci" and addr is not None:
        parts = [(addr.get(k) or "0").removeprefix("0x") for k in ("domain", "bus", "slot", "function")]
        return f"PCI host device {parts[0].zfill(4)}:{parts[1].zfill(2)}:{parts[2].zfill(2)}.{parts[3]}"
    if kind == "usb" and vendor is not None and product is not None:
        return f"USB host device {vendor.get('id')}:{product.get('id')}"
    return f"{kind} host device"


def _devices(root: Element) -> Element:
    devices = root.find("devices")
    return devices if devices is not None else etree.Element("devices")


def host_devices(root: Element) -> list[HostTie]:
    """Host devices and TPMs: what cannot leave this host (and is shared by a clone on it)."""
    out: list[HostTie] = []
    devices = _devices(root)
    for dev in devices.iterfind("hostdev"):
        out.append(HostTie("hostdev", _hostdev_name(dev), "it is hardware of this host, passed to the guest"))
    for _nic in devices.iterfind("interface[@type='hostdev']"):
        out.append(HostTie("hostdev", "host network device (interface type='hostdev')",
                           "it is hardware of this host, passed to the guest"))
    for tpm in devices.iterfind("tpm"):
        backend = tpm.find("backend")
        kind = backend.get("type") if backend is not None else None
        if kind == "passthrough":
            out.append(HostTie("tpm", "TPM passthrough", "it is this host's TPM chip"))
        else:
            out.append(HostTie("tpm", "emulated TPM", "its state (keys, sealed secrets) lives in this host's swtpm "
                               "directory under the VM's UUID, not in any disk"))
    return out


def unexportable(xml_root: Element) -> list[HostTie]:
    """What refuses an export: host devices and TPM passthrough (an emulated TPM's state travels in the archive)."""
    return [t for t in host_devices(xml_root) if t.what != "emulated TPM"]


def clone_warnings(root: Element, *, tpm_state: Literal["copied", "none", "not copied"] = "not copied") -> list[str]:
    """Warnings for a same-host clone that keeps host devices and TPMs; ``tpm_state``: what becomes of the source's
    emulated TPM state (copied to the clone, none yet as the source never ran, or left behind)."""
    out = []
    for tie in host_devices(root):
        if tie.kind == "hostdev":
            out.append(f"the clone keeps the {tie.what}: only one of the two VMs can run at a time")
        elif tie.what == "TPM passthrough":
            out.append("the clone keeps TPM passthrough: only one of the two VMs can run at a time")
        elif tpm_state == "none":
            out.append("the clone gets an empty emulated TPM: the source's has no state yet (it never ran)")
        elif tpm_state == "not copied":
            out.append("the clone gets an empty emulated TPM: the source's TPM state (keys, sealed secrets) "
                       "is not copied")
    return out


def _in_firmware_dirs(path: str | None) -> bool:
    return path is None or (os.path.isabs(path) and os.path.normpath(path).startswith(FIRMWARE_DIRS))


def untrusted_refusals(root: Element, *, allow_tpm_emulator: bool = False) -> list[HostTie]:
    """What a definition from an archive or backup directory may not hold (see the module docstring)."""
    out = [t for t in host_devices(root) if not (allow_tpm_emulator and t.what == "emulated TPM")]
    devices = _devices(root)
    for disk in devices.iterfind("disk"):
        tgt = disk.find("target")
        target = tgt.get("dev", "?") if tgt is not None else "?"
        src = disk.find("source")
        if disk.get("type") == "network" or (src is not None and src.get("protocol")):
            proto = src.get("protocol") if src is not None else "network"
            out.append(HostTie("network-disk", f"disk {target} ({proto} network disk)",
                               "it reaches a storage server from the importing host"))
        if disk.find(".//encryption") is not None or disk.find(".//auth") is not None \
                or disk.find(".//secret") is not None:
            out.append(HostTie("secret", f"disk {target} (encryption or auth secret)",
                               "it names a libvirt secret of the host, which the import did not make"))
    for fs in devices.iterfind("filesystem"):
        src = fs.find("source")
        where = (src.get("dir") or src.get("file") or src.get("name") or "") if src is not None else ""
        out.append(HostTie("filesystem", f"filesystem share of {where or 'a host path'}",
                           "it would give the guest a directory of the importing host"))
    for nic in devices.iterfind("interface"):
        kind = nic.get("type") or ""
        if kind in _HOST_NICS and kind != "hostdev":
            out.append(HostTie("nic", f"NIC of type {kind!r}", "it attaches to the host's own bridges, devices or "
                               "sockets (a kvmhub export connects NICs to libvirt networks)"))
        for tag in ("script", "downscript", "backend[@tap]", "backend[@vhost]"):
            for el in nic.iterfind(tag):
                out.append(HostTie("file", f"NIC {_desc(el)}", "it names a file or program on the host"))
    for chardev in [*devices.iterfind("serial"), *devices.iterfind("console"), *devices.iterfind("parallel"),
                    *devices.iterfind("channel")]:
        kind = chardev.get("type") or ""
        if kind in _HOST_CHARDEVS and not (kind == "unix" and chardev.find("source[@path]") is None):
            out.append(HostTie("chardev", f"{chardev.tag} of type {kind!r}",
                               "it opens a file, device or socket of the host"))
    paths = ("input[@type='evdev']", "input[@type='passthrough']", "memory/source/path", "shmem/server",
             "smartcard[@mode='passthrough']", "smartcard/database", "rng/backend[@model='random']", "*/rom[@file]")
    for el in [e for p in paths for e in devices.iterfind(p)]:
        if el.tag == "backend" and (el.text or "").strip() in ("", "/dev/urandom", "/dev/random"):
            continue
        out.append(HostTie("file", _desc(el), "it reads or writes a file or device of the host"))
    os_el = root.find("os")
    if os_el is not None:
        loader, nvram = os_el.find("loader"), os_el.find("nvram")
        if loader is not None and not _in_firmware_dirs((loader.text or "").strip() or None):
            out.append(HostTie("file", f"firmware {loader.text}", "it is outside the host's firmware directories"))
        if nvram is not None and not _in_firmware_dirs(nvram.get("template")):
            out.append(HostTie("file", f"NVRAM template {nvram.get('template')}",
                               "it is outside the host's firmware directories"))
        for tag in ("kernel", "initrd", "dtb", "acpi/table"):
            for el in os_el.iterfind(tag):
                out.append(HostTie("file", f"<{tag}> {el.text}", "it is a file on the host"))
    for entry in root.iterfind("sysinfo/entry[@file]"):
        out.append(HostTie("file", f"fw_cfg entry {entry.get('file')}", "it is a file on the host"))
    if root.find(f"{{{QEMU_NS}}}commandline") is not None or root.find(f"{{{QEMU_NS}}}override") is not None \
            or root.find(f"{{{QEMU_NS}}}capabilities") is not None:
        out.append(HostTie("qemu-commandline", "QEMU command-line passthrough (qemu:commandline)",
                           "it hands QEMU arbitrary options, files of the host included"))
    return out


__all__ = ["FIRMWARE_DIRS", "HostTie", "clone_warnings", "host_devices", "unexportable", "untrusted_refusals"]
