"""``<os firmware='efi'>`` and its ``<firmware>`` features: UEFI and Secure Boot through libvirt's firmware
autoselection, which picks OVMF from the host's firmware descriptors (``/usr/share/qemu/firmware``) at start
and fills ``<loader>`` and ``<nvram>`` (the NVRAM file made from the chosen firmware's variables template)."""

from __future__ import annotations

from kvmhub.models import VMSpec
from kvmhub.xml._util import Element, parse, sub


def build_firmware(os_el: Element, features: Element, spec: VMSpec) -> None:
    """Ask libvirt for UEFI firmware, with Secure Boot and enrolled keys (and SMM, which it needs) or explicitly
    without Secure Boot; nothing for BIOS."""
    if spec.firmware != "uefi":
        return
    os_el.set("firmware", "efi")
    firmware = make_after_type(os_el)
    on = "yes" if spec.secure_boot else "no"
    sub(firmware, "feature", {"enabled": on, "name": "enrolled-keys"})
    sub(firmware, "feature", {"enabled": on, "name": "secure-boot"})
    if spec.secure_boot:
        sub(features, "smm", {"state": "on"})


def make_after_type(os_el: Element) -> Element:
    """A ``<firmware>`` child of ``<os>`` placed right after ``<type>``, where libvirt writes it."""
    firmware = os_el.makeelement("firmware", {})
    type_el = os_el.find("type")
    os_el.insert(list(os_el).index(type_el) + 1 if type_el is not None else 0, firmware)
    return firmware


def parse_firmware(root: Element) -> tuple[str, bool]:
    """(``bios`` or ``uefi``, whether Secure Boot is on) for a ``<domain>``: autoselected firmware (its
    ``<firmware>`` features) or an explicit pflash ``<loader>`` (its ``secure`` attribute), inactive or live."""
    os_el = root.find("os")
    if os_el is None:
        return "bios", False
    loader = os_el.find("loader")
    uefi = os_el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash")
    if not uefi:
        return "bios", False
    if loader is not None and loader.get("secure") is not None:
        return "uefi", loader.get("secure") == "yes"
    return "uefi", os_el.find("firmware/feature[@name='secure-boot'][@enabled='yes']") is not None


def offered(domcaps_xml: str) -> tuple[bool, bool]:
    """(UEFI, UEFI with Secure Boot) as ``<domainCapabilities>`` (for a q35 machine) offers them: libvirt lists
    ``efi`` among the firmware it can autoselect, and ``secure`` ``yes`` when a descriptor has Secure Boot."""
    os_el = parse(domcaps_xml, "domain capabilities").find("os")
    if os_el is None or os_el.get("supported") != "yes":
        return False, False
    uefi = "efi" in {v.text for v in os_el.iterfind("enum[@name='firmware']/value")}
    secure = "yes" in {v.text for v in os_el.iterfind("loader/enum[@name='secure']/value")}
    return uefi, uefi and secure
