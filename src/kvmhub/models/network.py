"""Wire types for host networking: what `net bridge create` and `net bridge rm` report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BridgeResult(_Model):
    """What create or rm did."""

    bridge: str
    dev: str
    addresses: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)
    checked: str = ""
    seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)
