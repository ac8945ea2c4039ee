"""Wire types for export archives: the manifest an archive holds (written by export, checked by import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NVRAM_MAX_BYTES = 64 * 1024**2  # an NVRAM file larger than this is no firmware variable store


class ExportDisk(BaseModel):
    """One disk in an export archive."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(pattern=r"^[a-z]{1,4}[a-z0-9]{1,8}$")
    file: str = Field(pattern=r"^disk-[a-z0-9]{2,12}\.(qcow2|raw)$")
    format: Literal["qcow2", "raw"]
    bytes: int = Field(ge=0)
    capacity: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    volume: str | None = None  # its volume name on the exporting host


class ExportNvram(BaseModel):
    """The NVRAM file in an export archive."""

    model_config = ConfigDict(extra="forbid")

    file: Literal["nvram.fd"] = "nvram.fd"
    bytes: int = Field(ge=0, le=NVRAM_MAX_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ExportManifest(BaseModel):
    """``kvmhub-export.json``: what an export archive holds."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kvmhub-export"] = "kvmhub-export"
    version: Literal[1] = 1
    vm: str
    uuid: str
    created: str
    flattened: bool = True
    domain_xml: str
    disks: list[ExportDisk]
    nvram: ExportNvram | None = None
