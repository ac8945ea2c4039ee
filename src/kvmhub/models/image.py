"""Wire types for images."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kvmhub.models.documents import HostMedia


class ImageMeta(BaseModel):
    """What kvmhub records about an image when it is imported (kept in kvmhub's state database)."""

    source: str
    sha256: str
    checksum_verified: str | None = None
    original_format: str
    compression: str | None = None
    os: str | None = None
    imported: datetime
    complete: bool = True  # False while the import runs: such an image is never used
    project: str | None = None  # the project it was imported for (None: before projects, or by hand)


class ImageInfo(BaseModel):
    name: str
    pool: str
    volume: str
    path: str
    format: str
    virtual_bytes: int
    allocation_bytes: int
    used_by: list[str] = Field(default_factory=list)
    os: str | None = None
    source: str | None = None
    sha256: str | None = None
    checksum_verified: str | None = None
    original_format: str | None = None
    imported: datetime | None = None
    project: str | None = None  # the project it was imported for


ImageFormat = Literal["qcow2", "raw", "vmdk", "vdi", "vhdx", "vpc"]  # what `image import` converts from


class ImageImportRequest(BaseModel):
    """`image import`: exactly one of ``url`` (http/https, downloaded by the kvmhub host) or ``media`` (a
    file on the kvmhub host, or a volume), stored as image ``name``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str | None = None
    media: HostMedia | None = None
    format: ImageFormat | None = None  # default: from the header
    sha256: str | None = None  # expected checksum of the source as published
    sha512: str | None = None
    os: str | None = None  # libosinfo short id passed to the VMs made from it
    project: str | None = None  # the project it is imported for (None: default)

    @model_validator(mode="after")
    def _one_source(self) -> ImageImportRequest:
        if (self.url is None) == (self.media is None):
            raise ValueError("give exactly one of url or media")
        return self
