"""Wire types for a VM's network cards and addresses: what `nic add` takes, what it did, what `ip` finds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from kvmhub.models.vm import NICSpec


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NICAddRequest(_Model):
    """`nic add`: a NIC on ``network``, with ``ip`` reserved on it (default: the next free address)."""

    network: str
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    ip: str | None = None


class NICChange(_Model):
    """What `nic add` or `nic rm` did."""

    nic: NICSpec
    live: bool  # False: takes effect at the next start


class IPAddress(_Model):
    """An address of a VM and where kvmhub learned it."""

    ip: str
    prefix: int
    mac: str
    iface: str
    source: str  # lease | agent | arp | serial
