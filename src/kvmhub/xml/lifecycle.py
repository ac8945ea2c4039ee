"""``<on_reboot>`` and the one-shot installer boot.

kvmhub records an installer boot in its metadata (``<kvmhub:install-boot>``) when it makes the VM, and
only such a VM is changed after its first start; a domain defined elsewhere with the same XML is left
alone. Two kinds:

- ``kernel``, an unattended install: the definition says ``<on_reboot>destroy`` next to ``<os><kernel>``,
  so the installer's closing reboot powers the VM off instead of starting the installer again; once that
  run has started, the definition for later starts loses the kernel boot and reboots normally.
- ``cdrom``, an ``--iso`` install: the CD-ROM boots first on the first start only; later starts boot the
  disk first, with the CD-ROM still attached.

virt-install likewise drops the install boot from the definition it leaves behind.
"""

from __future__ import annotations

from typing import Literal

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, child_text, expect_root, parse, serialize, text_of
from kvmhub.xml.metadata import KVMHUB_NS, ROOT_TAG

InstallBoot = Literal["kernel", "cdrom"]

_KERNEL_BOOT = ("kernel", "initrd", "cmdline")
_FLAG = f"metadata/{ROOT_TAG}/{{{KVMHUB_NS}}}install-boot"


def _domain(xml: str) -> Element:
    root = parse(xml, "domain")
    expect_root(root, "domain", "domain")
    return root


def _set_on_reboot(root: Element, action: str) -> None:
    el = root.find("on_reboot")
    if el is None:
        raise InvalidInput("cannot read the domain XML", cause="it has no <on_reboot>")
    el.text = action


def install_boot_xml(xml: str) -> str:
    """Domain XML with a kernel boot made one-shot: the guest's reboot powers the VM off."""
    root = _domain(xml)
    if root.find("os/kernel") is None:
        raise InvalidInput("cannot make a one-shot install boot", cause="the domain has no <os><kernel>")
    _set_on_reboot(root, "destroy")
    return serialize(root)


def install_boot_of(xml: str) -> InstallBoot | None:
    """The installer boot kvmhub recorded in domain XML and has not yet dropped, if any."""
    el = _domain(xml).find(_FLAG)
    if el is None:
        return None
    kind = text_of(el).strip()
    return "kernel" if kind == "kernel" else "cdrom" if kind == "cdrom" else None


def is_install_boot(xml: str) -> bool:
    """Whether domain XML is kvmhub's one-shot installer kernel boot (ends at the guest's reboot)."""
    root = _domain(xml)
    return (install_boot_of(xml) == "kernel" and root.find("os/kernel") is not None
            and child_text(root, "on_reboot") == "destroy")


def _disk_first(root: Element) -> None:
    """Drop the CD-ROMs' boot entries; the other devices keep their order, renumbered from 1."""
    devices = root.find("devices")
    if devices is None:
        return
    for boot in devices.findall("disk[@device='cdrom']/boot"):
        parent = boot.getparent()
        if parent is not None:
            parent.remove(boot)
    rest = sorted(devices.findall("*/boot[@order]"), key=lambda b: int(b.get("order", "0")))
    for number, boot in enumerate(rest, start=1):
        boot.set("order", str(number))


def after_install_xml(xml: str) -> str:
    """The definition for starts after the install run: the recorded installer boot dropped.

    ``kernel``: no kernel boot, reboots restart. ``cdrom``: the disk boots first, the CD-ROM stays attached.
    The metadata no longer records an installer boot.
    """
    root = _domain(xml)
    kind = install_boot_of(xml)
    if kind == "kernel":
        os_el = root.find("os")
        if os_el is not None:
            for tag in _KERNEL_BOOT:
                for el in os_el.findall(tag):
                    os_el.remove(el)
        _set_on_reboot(root, "restart")
    elif kind == "cdrom":
        _disk_first(root)
    for flag in root.findall(_FLAG):
        parent = flag.getparent()
        if parent is not None:
            parent.remove(flag)
    return serialize(root)
