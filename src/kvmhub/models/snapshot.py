"""Wire types for snapshots: what a snapshot request asks for and what kvmhub reports about one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models.vm import DiskSource

SnapshotKind = Literal["internal", "external"]
DiskSnapshotMode = Literal["internal", "external", "no"]
MemoryMode = Literal["internal", "external", "no"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotDisk(_Model):
    """One disk in a snapshot: how it is captured and, for external ones, the overlay file made for it."""

    target: str
    snapshot: DiskSnapshotMode
    file: str | None = None
    format: str | None = None


class SnapshotSpec(_Model):
    """What to ask libvirt for: the ``<domainsnapshot>`` kvmhub hands to snapshotCreateXML."""

    name: str
    description: str | None = None
    memory: MemoryMode = "no"
    memory_file: str | None = None
    disks: list[SnapshotDisk] = Field(default_factory=list)


class SnapshotOptions(_Model):
    """What to capture, the VM given elsewhere (the API's ``POST /vms/{name}/snapshots``)."""

    name: str | None = None  # default: snap-DATE-TIME
    memory: bool = False
    disk_only: bool = False  # external, the disks only
    quiesce: bool = False  # freeze guest file systems through the guest agent around it
    description: str | None = None


class SnapshotRequest(SnapshotOptions):
    """`snapshot create`: what to capture of VM ``vm``. Running VMs: with memory unless ``disk_only``."""

    vm: str


class SnapshotInfo(_Model):
    """A snapshot as kvmhub reports it (``snapshot ls --json`` / ``snapshot show --json``)."""

    vm: str
    name: str
    kind: SnapshotKind
    description: str | None = None
    created: str | None = None
    state: str = ""
    parent: str | None = None
    children: list[str] = Field(default_factory=list)
    current: bool = False
    memory: bool = False
    memory_file: str | None = None
    disks: list[SnapshotDisk] = Field(default_factory=list)
    # disk target -> the file that holds the disk as it was at the snapshot (external snapshots)
    frozen: dict[str, DiskSource] = Field(default_factory=dict)
