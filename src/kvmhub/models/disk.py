"""What `kvmhub disk ls` reports about each disk of a VM."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DiskInfo(BaseModel):
    """One disk or CD-ROM drive of a VM, with its size when libvirt knows it."""

    model_config = ConfigDict(extra="forbid")

    target: str
    bus: str
    device: str
    source: str  # pool/volume, a host path, or a URL
    format: str
    capacity: int | None = None  # bytes the guest sees
    allocation: int | None = None  # bytes used on the host
    readonly: bool = False
    owned: bool = False  # kvmhub made its volume for this VM and deletes it with the VM
    encrypted: bool = False
