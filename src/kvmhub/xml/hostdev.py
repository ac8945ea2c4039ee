"""Node devices (libvirt's view of the host's hardware) and ``<hostdev>``: a host device given to a VM."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmhub.xml._util import Element, child_text, make, parse, serialize, sub

# the class byte of a PCI class code, as a word
_PCI_CLASSES = {
    0x01: "storage", 0x02: "network", 0x03: "display", 0x04: "multimedia", 0x05: "memory", 0x06: "bridge",
    0x07: "communication", 0x08: "system", 0x09: "input", 0x0C: "serial-bus", 0x0D: "wireless",
    0x10: "encryption", 0x11: "signal-processing", 0x12: "accelerator", 0xFF: "other",
}  # fmt: skip
BRIDGE_CLASS = 0x06


@dataclass
class NodeDevice:
    """What kvmhub reads of one node device's XML (``virsh nodedev-dumpxml``)."""

    name: str
    kind: str  # pci, usb_device, mdev, net, storage ... (the first capability's type)
    parent: str | None = None
    path: str | None = None  # its sysfs directory
    driver: str | None = None
    pci_address: str | None = None  # DDDD:BB:SS.F
    pci_class: int | None = None
    usb_bus: int | None = None
    usb_device: int | None = None
    vendor_id: str | None = None  # 4 hex digits, lower case
    vendor: str | None = None
    product_id: str | None = None
    product: str | None = None
    iommu_group: int | None = None
    group_addresses: list[str] = field(default_factory=list)
    interface: str | None = None  # a net device's interface name
    block: str | None = None  # a storage device's /dev path
    mdev_uuid: str | None = None
    mdev_type: str | None = None

    @property
    def class_word(self) -> str | None:
        return None if self.pci_class is None else _PCI_CLASSES.get(self.pci_class >> 16, f"0x{self.pci_class:06x}")


def pci_address(domain: int, bus: int, slot: int, function: int) -> str:
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def _int(text: str | None) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def _hex4(value: str | None) -> str | None:
    n = _int(value)
    return None if n is None else f"{n:04x}"


def _address_of(el: Element) -> str | None:
    parts = [_int(el.get(k)) for k in ("domain", "bus", "slot", "function")]
    if any(p is None for p in parts):
        return None
    d, b, s, f = (p or 0 for p in parts)
    return pci_address(d, b, s, f)


def node_device_from_xml(xml: str) -> NodeDevice:
    """The facts of a node device's XML that listing and passthrough need."""
    root = parse(xml, "node device")
    cap = root.find("capability")
    dev = NodeDevice(name=child_text(root, "name") or "", kind=cap.get("type", "") if cap is not None else "",
                     parent=child_text(root, "parent"), path=child_text(root, "path"),
                     driver=child_text(root, "driver/name"))
    if cap is None:
        return dev
    vendor, product = cap.find("vendor"), cap.find("product")
    if vendor is not None:
        dev.vendor_id, dev.vendor = _hex4(vendor.get("id")), (vendor.text or "").strip() or None
    if product is not None:
        dev.product_id, dev.product = _hex4(product.get("id")), (product.text or "").strip() or None
    group = cap.find("iommuGroup")
    if group is not None:
        dev.iommu_group = _int(group.get("number"))
        dev.group_addresses = [a for a in (_address_of(el) for el in group.iterfind("address")) if a]
    if dev.kind == "pci":
        parts = [_int(child_text(cap, k)) for k in ("domain", "bus", "slot", "function")]
        if all(p is not None for p in parts):
            d, b, s, f = (p or 0 for p in parts)
            dev.pci_address = pci_address(d, b, s, f)
        dev.pci_class = _int(child_text(cap, "class"))
    elif dev.kind == "usb_device":
        dev.usb_bus, dev.usb_device = _int(child_text(cap, "bus")), _int(child_text(cap, "device"))
    elif dev.kind == "net":
        dev.interface = child_text(cap, "interface")
    elif dev.kind == "storage":
        dev.block = child_text(cap, "block")
    elif dev.kind == "mdev":
        dev.mdev_uuid = child_text(cap, "uuid") or _uuid_of_name(dev.name)
        mtype = cap.find("type")
        dev.mdev_type = mtype.get("id") if mtype is not None else None
    return dev


def _uuid_of_name(name: str) -> str | None:
    # older libvirt names a mediated device mdev_UUID_WITH_UNDERSCORES and has no <uuid>
    rest = name.removeprefix("mdev_")[:36].replace("_", "-")
    return rest if len(rest) == 36 else None


@dataclass(frozen=True)
class GivenDevice:
    """A ``<hostdev>`` of a domain, by what identifies the host device."""

    kind: str  # pci, usb, mdev
    pci_address: str | None = None
    vendor_id: str | None = None
    product_id: str | None = None
    usb_bus: int | None = None
    usb_device: int | None = None
    mdev_uuid: str | None = None
    xml: str = ""

    def matches(self, dev: NodeDevice) -> bool:
        """True when this ``<hostdev>`` names ``dev``."""
        if self.kind == "pci":
            return dev.kind == "pci" and self.pci_address == dev.pci_address
        if self.kind == "mdev":
            return dev.kind == "mdev" and self.mdev_uuid is not None and self.mdev_uuid == dev.mdev_uuid
        if self.kind != "usb" or dev.kind != "usb_device":
            return False
        if self.vendor_id is not None and (self.vendor_id, self.product_id) != (dev.vendor_id, dev.product_id):
            return False
        if self.usb_bus is not None and (self.usb_bus, self.usb_device) != (dev.usb_bus, dev.usb_device):
            return False
        return self.vendor_id is not None or self.usb_bus is not None


def given_devices(domain_xml: str) -> list[GivenDevice]:
    """The PCI, USB and mediated ``<hostdev>`` devices of a domain's XML."""
    root = parse(domain_xml, "domain")
    out: list[GivenDevice] = []
    for el in root.iterfind("devices/hostdev[@mode='subsystem']"):
        kind = el.get("type", "")
        text = serialize(el)
        addr = el.find("source/address")
        if kind == "pci" and addr is not None:
            out.append(GivenDevice("pci", pci_address=_address_of(addr), xml=text))
        elif kind == "mdev" and addr is not None:
            out.append(GivenDevice("mdev", mdev_uuid=addr.get("uuid"), xml=text))
        elif kind == "usb":
            vendor, product = el.find("source/vendor"), el.find("source/product")
            out.append(GivenDevice(
                "usb", vendor_id=_hex4(vendor.get("id")) if vendor is not None else None,
                product_id=_hex4(product.get("id")) if product is not None else None,
                usb_bus=_int(addr.get("bus")) if addr is not None else None,
                usb_device=_int(addr.get("device")) if addr is not None else None, xml=text))
    return out


def hostdev_to_xml(dev: NodeDevice) -> str:
    """The ``<hostdev>`` giving ``dev`` to a VM: managed (libvirt binds a PCI device to vfio-pci and back)."""
    if dev.kind == "pci" and dev.pci_address:
        el = make("hostdev", {"mode": "subsystem", "type": "pci", "managed": "yes"})
        domain, bus, rest = dev.pci_address.split(":")
        slot, function = rest.split(".")
        sub(sub(el, "source"), "address", {"domain": f"0x{domain}", "bus": f"0x{bus}", "slot": f"0x{slot}",
                                           "function": f"0x{function}"})
    elif dev.kind == "usb_device":
        el = make("hostdev", {"mode": "subsystem", "type": "usb", "managed": "yes"})
        source = sub(el, "source")
        sub(source, "vendor", {"id": f"0x{dev.vendor_id}"})
        sub(source, "product", {"id": f"0x{dev.product_id}"})
    elif dev.kind == "mdev" and dev.mdev_uuid:
        el = make("hostdev", {"mode": "subsystem", "type": "mdev", "model": "vfio-pci"})
        sub(sub(el, "source"), "address", {"uuid": dev.mdev_uuid})
    else:
        raise ValueError(f"node device {dev.name} of kind {dev.kind} cannot be given to a VM")
    return serialize(el)
