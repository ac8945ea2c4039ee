"""Wire types of warm templates: a VM's saved memory and frozen disk, from which new VMs start in a moment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateCreateRequest(_Model):
    """Make template ``name`` from running VM ``source`` (its memory saved, its disk frozen as the base)."""

    name: str
    source: str


class TemplateRecord(_Model):
    """What kvmhub keeps beside a template's state file on the host: the saved domain's definition and cookie
    (rewritten into the state file for every VM made from it) and where its disks were."""

    name: str
    source: str
    source_uuid: str
    created: str
    image: str | None = None
    project: str | None = None
    vcpus: int
    memory_mib: int
    xml: str  # the domain definition the state was saved with (no NIC)
    disk: str  # that definition's writable disk source: pool/volume (the source's, now an overlay on the base)
    seed: str | None = None  # its seed disk source, pool/volume, replaced by each new VM's own seed
    base_pool: str
    base_volume: str
    base_path: str
    state_path: str  # the state file on the host


class TemplateInfo(_Model):
    """A template as `template ls` / `template show` report it."""

    name: str
    source: str
    created: str
    image: str | None = None
    project: str | None = None
    vcpus: int
    memory_mib: int
    base: str  # pool/volume
    base_bytes: int  # allocated on the host
    state_path: str
    state_bytes: int
    vms: list[str] = Field(default_factory=list)  # the VMs whose disks sit on the base
