"""Wire types for virtual machines: the spec a VM is made from and what kvmhub reports about it."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiskSource(_Model):
    """Where a disk's bytes live: a libvirt volume (pool + volume) or a plain host path."""

    pool: str | None = None
    volume: str | None = None
    path: str | None = None


class DiskSpec(_Model):
    target: str = "vda"
    bus: Literal["virtio", "scsi", "sata", "ide", "usb"] = "virtio"
    device: Literal["disk", "cdrom"] = "disk"
    format: Literal["qcow2", "raw"] = "qcow2"
    source: DiskSource = Field(default_factory=DiskSource)
    readonly: bool = False
    cache: Literal["none", "writeback", "writethrough", "unsafe", "directsync"] | None = None
    serial: str | None = None


class NICSpec(_Model):
    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"


class SerialSpec(_Model):
    """The VM's ttyS0: a pty for the interactive console, mirrored to a log file."""

    log_file: str | None = None


class GraphicsSpec(_Model):
    type: Literal["vnc"] = "vnc"
    listen: str = "127.0.0.1"
    port: int = -1  # -1: libvirt picks a free port


BootDevice = Literal["hd", "cdrom", "network"]


def _boot_from_disk() -> list[BootDevice]:
    return ["hd"]


class BootSpec(_Model):
    """Boot order over devices, or a direct kernel boot."""

    order: list[BootDevice] = Field(default_factory=_boot_from_disk)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


class KvmhubMeta(_Model):
    """kvmhub's own facts about a VM; stored in the domain's <metadata> so they travel with it."""

    image: str | None = None
    owner: str | None = None
    project: str | None = None
    stack: str | None = None
    tags: list[str] = Field(default_factory=list)
    created: str | None = None
    owned_volumes: list[str] = Field(default_factory=list)  # "pool/volume" kvmhub made for this VM


class VMSpec(_Model):
    """Everything kvmhub writes into a libvirt domain definition."""

    name: str
    uuid: str | None = None
    domain_type: Literal["kvm", "qemu"] = "kvm"
    arch: str = "x86_64"
    machine: str | None = None
    vcpus: int = Field(default=1, ge=1)
    memory_mib: int = Field(default=512, ge=16)
    description: str | None = None
    disks: list[DiskSpec] = Field(default_factory=list)
    nics: list[NICSpec] = Field(default_factory=list)
    serial: SerialSpec | None = Field(default_factory=SerialSpec)
    graphics: GraphicsSpec | None = None
    boot: BootSpec = Field(default_factory=BootSpec)
    guest_agent: bool = True
    meta: KvmhubMeta = Field(default_factory=KvmhubMeta)


class Phase(enum.StrEnum):
    """How far a VM has come; each phase implies the ones before it."""

    DEFINED = "defined"
    RUNNING = "running"
    BOOTED = "booted"
    NETWORK = "network"
    READY = "ready"


PHASE_ORDER: list[Phase] = [Phase.DEFINED, Phase.RUNNING, Phase.BOOTED, Phase.NETWORK, Phase.READY]


class VMInfo(_Model):
    """What `kvmhub ls` and `kvmhub show` report about a VM."""

    name: str
    uuid: str
    state: str  # libvirt's run state: running, paused, shut off, crashed, pmsuspended...
    persistent: bool
    autostart: bool
    vcpus: int
    memory_mib: int
    domain_type: str
    ips: list[str] = Field(default_factory=list)
    image: str | None = None
    disks: list[DiskSpec] = Field(default_factory=list)
    nics: list[NICSpec] = Field(default_factory=list)
    serial_log: str | None = None
    vnc: str | None = None
    managed: bool = False  # made by kvmhub (has kvmhub metadata)
