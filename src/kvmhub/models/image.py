"""Wire types for images."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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
