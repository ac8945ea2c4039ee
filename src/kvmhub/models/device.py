"""Wire types for host devices: what `host devices` lists and what `device attach|detach` take and did."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DeviceKind = Literal["pci", "usb", "mdev"]
# a PCI address (DDDD:BB:SS.F or BB:SS.F), a USB or PCI VENDOR:PRODUCT id, or a mediated device's UUID
DEVICE_PATTERN = (r"^(?:(?:[0-9A-Fa-f]{4}:)?[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]"
                  r"|[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}"
                  r"|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostDevice(_Model):
    """A device of the VM's host that could be given to a VM.

    ``id`` is what `device attach` takes: the PCI address (``0000:00:03.0``), the USB ``vendor:product`` or the
    mediated device's UUID. ``iommu_group`` is None when the host has no IOMMU (or it is off); ``group_viable``
    says whether every other device of the group is free of host drivers. ``vm`` is the VM it is given to;
    ``host_use`` what the host itself uses it for (a NIC with an address, the disk holding ``/``), None when
    unused or unknown (a remote host)."""

    kind: DeviceKind
    id: str
    node: str  # libvirt's node device name (virsh nodedev-dumpxml NODE)
    vendor_id: str | None = None
    vendor: str | None = None
    product_id: str | None = None
    product: str | None = None
    device_class: str | None = None  # PCI class as a word (network, storage, display ...)
    driver: str | None = None
    usb_address: str | None = None  # BUS.DEVICE of a USB device
    parent: str | None = None  # a mediated device's parent (PCI address)
    mdev_type: str | None = None
    iommu_group: int | None = None
    group: list[str] = Field(default_factory=list)  # the other PCI addresses in the IOMMU group
    group_viable: bool | None = None
    vm: str | None = None
    host_use: str | None = None


class DeviceAttachRequest(_Model):
    """`device attach`: give the host device ``device`` (see :data:`DEVICE_PATTERN`) to the VM."""

    device: str = Field(pattern=DEVICE_PATTERN)


class DeviceChange(_Model):
    """What `device attach` or `device detach` did: ``live`` False means it takes effect at the next start."""

    device: HostDevice
    live: bool
