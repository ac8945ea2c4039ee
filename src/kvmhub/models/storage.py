"""Wire types for storage pools and the volumes in them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PoolType = Literal["dir", "fs", "netfs", "logical", "iscsi", "iscsi-direct", "rbd"]


class PoolSpec(BaseModel):
    """What a storage pool is made from: its type and the source and target that type needs.

    dir: path. fs: device, path, fs_format. netfs: host, export, path, nfs_version. logical: vg (the
    volume group), devices. iscsi: host, port, iqn (the target), path. iscsi-direct: host, port, iqn,
    initiator_iqn. rbd: host, port, source_name (the Ceph pool), auth_user, secret_uuid.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    type: PoolType = "dir"
    path: str | None = None  # target directory (or /dev/VG, /dev/disk/by-path)
    devices: list[str] = Field(default_factory=list)
    fs_format: str | None = None  # fs: ext4, xfs, auto...
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    export: str | None = None  # netfs: the exported directory on the server
    nfs_version: str | None = None
    vg: str | None = None  # logical: volume group name
    iqn: str | None = None  # iscsi, iscsi-direct: the target's IQN
    initiator_iqn: str | None = None  # iscsi-direct (optional for iscsi)
    source_name: str | None = None  # rbd: the Ceph pool
    auth_user: str | None = None
    secret_uuid: str | None = None


class PoolInfo(BaseModel):
    """What `kvmhub pool ls` and `pool show` report about a pool."""

    name: str
    type: str
    state: Literal["active", "inactive", "building", "degraded", "inaccessible", "unknown"]
    autostart: bool
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int
    path: str | None = None
    source: str | None = None  # e.g. nfs server:/export, iqn, ceph pool
    volumes: int | None = None  # only known while the pool is active
    used_by: list[str] = Field(default_factory=list)  # VMs with a disk in the pool


class VolumeInfo(BaseModel):
    """What `kvmhub vol ls` and `vol show` report about a volume."""

    pool: str
    name: str
    path: str
    format: str | None = None
    capacity_bytes: int
    allocation_bytes: int
    backing: str | None = None  # backing file path
    backing_volume: str | None = None  # the backing file as POOL/VOL when libvirt knows it
    used_by: list[str] = Field(default_factory=list)  # VMs with this volume (or an overlay of it) as a disk
    backs: list[str] = Field(default_factory=list)  # POOL/VOL overlays backed by this volume
