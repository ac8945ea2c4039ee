"""Wire types for storage pools and the volumes in them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models.plain import DEFAULT_PROJECT

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
    project: str = DEFAULT_PROJECT  # whose it is (kvmhub.services.storage.volume_projects)


VolumeFormat = Literal["qcow2", "raw"]
MAX_BYTES = 1 << 53  # 8 PiB: beyond any pool, and exact as a JSON number in every client


class VolumeCreateRequest(BaseModel):
    """`vol create`: an empty volume ``name`` of ``capacity_bytes``, or a qcow2 overlay of ``backing`` (POOL/VOL;
    its size unless ``capacity_bytes`` is given)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    capacity_bytes: int | None = Field(default=None, gt=0, le=MAX_BYTES)
    format: VolumeFormat | None = None  # default qcow2 in file pools
    backing: str | None = None
    allocate: bool = False  # allocate the whole size now (not sparse)
    project: str | None = None  # the owning project; None: the caller's only project, else default


class VolumeCloneRequest(BaseModel):
    """`vol clone`: a full copy of the volume as ``target`` (NAME in the same pool, or POOL/NAME), or a qcow2
    overlay backed by it (``linked``)."""

    model_config = ConfigDict(extra="forbid")

    target: str
    linked: bool = False
    format: VolumeFormat | None = None  # full copies: default the source's
    project: str | None = None  # the copy's project; None: the caller's only project, else default


class VolumeResizeRequest(BaseModel):
    """`vol resize`: to ``capacity_bytes`` (or by that much with ``grow``); smaller only with ``shrink``."""

    model_config = ConfigDict(extra="forbid")

    capacity_bytes: int = Field(gt=0, le=MAX_BYTES)
    grow: bool = False
    shrink: bool = False
