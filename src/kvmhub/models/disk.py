"""Wire types for a VM's disks: what `disk ls` reports, what `disk add|resize` take and what they did."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models.vm import DiskSpec


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


class DiskAddRequest(BaseModel):
    """`disk add`: exactly one of a new volume of ``size``, an existing volume ``vol`` or a network export ``url``."""

    model_config = ConfigDict(extra="forbid")

    size: str | None = None  # e.g. 10G
    vol: str | None = None  # POOL/VOLUME
    url: str | None = None  # nfs:// iscsi:// nbd:// http(s)://
    bus: Literal["virtio", "scsi", "sata"] = "virtio"  # sata only on a shut-off VM
    readonly: bool = False
    format: Literal["qcow2", "raw"] | None = None  # default: the volume's
    encrypt: bool = False  # LUKS-encrypt the new volume (its key in a libvirt secret)
    target: str | None = None  # device name, e.g. vdc; default: the next free one


class DiskResizeRequest(BaseModel):
    """`disk resize`: the disk's new size (disks only grow)."""

    model_config = ConfigDict(extra="forbid")

    size: str = Field(min_length=1)  # e.g. 20G


class DiskChange(BaseModel):
    """What `disk add` or `disk rm` did: the disk, whether it happened live, the volumes deleted."""

    model_config = ConfigDict(extra="forbid")

    disk: DiskSpec
    live: bool  # False: the VM is shut off and sees the change at its next start
    deleted: list[str] = Field(default_factory=list)  # pool/volume


class DiskResize(BaseModel):
    """What `disk resize` did."""

    model_config = ConfigDict(extra="forbid")

    target: str
    old_bytes: int
    new_bytes: int
    live: bool  # the running guest saw the new size at once
