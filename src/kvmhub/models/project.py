"""Projects: who may act on which VMs, and how much of the host they may use."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


QUOTA_MAX = 2**62  # bytes or a count: more than any host has, and what SQLite's integers hold


class ProjectQuota(_Model):
    """A project's limits; None is unlimited. Memory and disk in bytes, vCPUs and memory as their maximums."""

    max_vms: int | None = Field(default=None, ge=0, le=QUOTA_MAX)
    max_cpus: int | None = Field(default=None, ge=0, le=QUOTA_MAX)
    max_memory: int | None = Field(default=None, ge=0, le=QUOTA_MAX)
    max_disk: int | None = Field(default=None, ge=0, le=QUOTA_MAX)
    max_networks: int | None = Field(default=None, ge=0, le=QUOTA_MAX)


class ProjectUse(_Model):
    """What a project's VMs hold (or what a request would add): count, max vCPUs, max memory and disk
    capacity in bytes, networks."""

    vms: int = 0
    cpus: int = 0
    memory: int = 0
    disk: int = 0
    networks: int = 0


class ProjectRequest(ProjectQuota):
    """A project to make, with its quotas."""

    name: str = Field(min_length=1, max_length=64)


class ProjectInfo(_Model):
    """A project as listed and shown: its quotas, members and (when asked) current use."""

    name: str
    quota: ProjectQuota = Field(default_factory=ProjectQuota)
    members: list[str] = Field(default_factory=list)
    created: float = 0.0
    use: ProjectUse | None = None


class MemberRequest(_Model):
    """A user to add to a project."""

    user: str = Field(min_length=1, max_length=64)
