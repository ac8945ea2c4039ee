"""Wire types for host networking: what `net bridge create` and `net bridge rm` report, and the requests of
`net create` and `net lease add`."""

from __future__ import annotations

from typing import Literal

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


TEXT = r"^[^\x00-\x1f\x7f]+$"  # no NUL or control characters
NetworkMode = Literal["nat", "isolated", "routed", "open", "bridge", "direct"]


class NetworkCreateRequest(_Model):
    """`net create`: a network of ``mode``. nat, isolated, routed, open: a bridge of its own with DHCP over
    ``subnet`` (a free /24 when not given); bridge: guests join the host bridge ``bridge``; direct: macvtap on
    the host NIC ``dev``."""

    name: str
    mode: NetworkMode = "isolated"
    subnet: str | None = None  # IPv4 CIDR, e.g. 10.20.0.0/24
    subnet6: str | None = None  # IPv6 CIDR, e.g. fd10:20::/64
    dhcp_range: str | None = None  # A-B, e.g. 10.20.0.100-10.20.0.200
    domain: str | None = None  # DNS domain: VMs answer as NAME and NAME.DOMAIN
    bridge: str | None = None
    dev: str | None = None
    autostart: bool = True
    project: str | None = None  # the owning project; None: the caller's only project, else default


class LeaseRequest(_Model):
    """`net lease add`: reserve ``ip`` for VM ``vm``'s NIC on the network."""

    vm: str = Field(min_length=1, max_length=64, pattern=TEXT)
    ip: str = Field(min_length=1, max_length=64, pattern=TEXT)
