"""Wire types for operating systems known to libosinfo's database and the device profile picked for one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OSInfo(_Model):
    """One operating system of osinfo-db, as `kvmhub os ls` lists it."""

    id: str  # libosinfo short id, e.g. debian11
    name: str
    family: str | None = None  # linux, winnt, freebsd...
    distro: str | None = None
    version: str | None = None
    vendor: str | None = None
    release_date: str | None = None  # YYYY-MM-DD
    eol: str | None = None  # end-of-life date, YYYY-MM-DD
    aliases: list[str] = Field(default_factory=list)  # other short ids of the same OS, e.g. debianbullseye


class OSProfile(_Model):
    """The virtual hardware and sizes an OS variant gets: buses its kernel has drivers for, minimums."""

    requested: str  # what the user asked for
    id: str  # the short id whose data was used (differs from `requested` after a fallback)
    name: str
    family: str
    distro: str | None = None
    version: str | None = None
    disk_bus: Literal["virtio", "scsi", "sata", "ide"]
    cdrom_bus: Literal["scsi", "sata", "ide"]
    nic_model: Literal["virtio", "e1000", "rtl8139"]
    machine: Literal["q35", "pc"]
    min_memory_mib: int | None = None
    recommended_memory_mib: int | None = None
    min_disk_bytes: int | None = None
    recommended_disk_bytes: int | None = None
    note: str | None = None  # why another OS's data was used, or how the OS was detected
