"""Wire types for images."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageInfo(BaseModel):
    name: str
    pool: str
    volume: str
    path: str
    format: str
    virtual_bytes: int
    allocation_bytes: int
    used_by: list[str] = Field(default_factory=list)
