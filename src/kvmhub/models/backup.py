"""Wire types for backups: the points of a backup chain and the checkpoints behind incremental ones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BackupKind = Literal["full", "incremental"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackupDisk(_Model):
    """One disk's file in a backup point (a qcow2; an incremental one holds only the changed clusters)."""

    target: str
    file: str  # relative to the backup directory
    capacity: int = 0  # the disk's virtual size in bytes
    bytes: int = 0  # size of the file
    sha256: str = ""


class BackupPoint(_Model):
    """One backup: full, or incremental since its parent (the point before it in the same directory)."""

    name: str
    kind: BackupKind
    parent: str | None = None
    checkpoint: str
    created: str
    duration_s: float = 0.0
    disks: list[BackupDisk] = Field(default_factory=list)
    domain_xml: str = ""


class BackupManifest(_Model):
    """A backup directory's index, written next to the disk files."""

    format: int = 1
    vm: str
    uuid: str
    points: list[BackupPoint] = Field(default_factory=list)


class BackupOptions(_Model):
    """Where to back up to, the VM given elsewhere (the API's ``POST /vms/{name}/backups``)."""

    directory: str  # an absolute path on the VM's host (which must be kvmhub's)
    incremental: bool = False  # only what changed since the last backup in ``directory``


class BackupRequest(BackupOptions):
    """`backup`: VM ``vm`` into ``directory``, an absolute path on the VM's host (which must be kvmhub's)."""

    vm: str


class RestoreRequest(_Model):
    """`backup restore`: VM ``vm``'s disks from the backups in ``directory`` (a path on the VM's host)."""

    vm: str
    directory: str
    at: str | None = None  # backup point; default: the latest
    as_name: str | None = None  # a new VM beside the old one
    pool: str | None = None  # pool of the restored disks (with ``as_name``)


class BackupInfo(_Model):
    """A backup point as `backup ls --json` reports it."""

    vm: str
    directory: str
    name: str
    kind: BackupKind
    parent: str | None = None
    checkpoint: str
    checkpoint_present: bool = False  # the VM still has the checkpoint (an incremental can follow it)
    created: str
    bytes: int = 0
    duration_s: float = 0.0


class CheckpointInfo(_Model):
    """A libvirt checkpoint of a VM (the dirty bitmaps an incremental backup starts from)."""

    name: str
    parent: str | None = None
    created: str | None = None
    description: str | None = None
    disks: dict[str, str] = Field(default_factory=dict)  # target -> bitmap | no
