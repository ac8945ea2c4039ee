"""``<controller>``: the SCSI host adapter disks on the scsi bus hang off."""

from __future__ import annotations

from kvmhub.xml._util import make, parse, serialize


def scsi_controller_xml(index: int = 0) -> str:
    """A virtio-scsi controller, e.g. for ``attachDeviceFlags`` before the first scsi disk.

    virtio-scsi, not libvirt's default lsilogic, which many QEMU builds leave out.
    """
    return serialize(make("controller", {"type": "scsi", "index": str(index), "model": "virtio-scsi"}))


def has_scsi_controller(domain_xml: str) -> bool:
    """Whether the domain already has a SCSI controller."""
    return parse(domain_xml, "domain").find("devices/controller[@type='scsi']") is not None
