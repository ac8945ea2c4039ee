"""Wire types for host checks."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, Field


class CheckStatus(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class CheckItem(BaseModel):
    """One line of `kvmhub host check`: what was checked, what was found, and the fix if any."""

    name: str
    status: CheckStatus
    detail: str
    fix: str | None = None


class HostReport(BaseModel):
    uri: str
    accelerator: Literal["kvm", "tcg"]
    domain_type: Literal["kvm", "qemu"]
    checks: list[CheckItem] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != CheckStatus.FAIL for c in self.checks)


class HostSummary(BaseModel):
    """One host the server manages: its libvirt URI, name, accelerator (None until probed) and libvirt."""

    name: str
    uri: str
    hostname: str
    accelerator: Literal["kvm", "tcg"] | None = None
    libvirt_version: str
    hypervisor_version: str
