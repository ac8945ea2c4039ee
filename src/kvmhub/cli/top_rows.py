"""The cells of `kvmhub top`'s table, shared by the full command and the one answered before the CLI loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmhub.units import format_size

if TYPE_CHECKING:
    from kvmhub.models.stats import VMStats
    from kvmhub.services.monitor.usage import Usage

COLUMNS = ["NAME", "STATE", "CPU%", "MEM USED", "MEM AVAIL", "RSS", "DISK R/s", "DISK W/s", "R IOPS", "W IOPS",
           "NET RX/s", "NET TX/s"]  # fmt: skip


def size(n: float | None, suffix: str = "") -> str:
    """A byte count (or rate, with `suffix`) for people; - when unknown."""
    return "-" if n is None else format_size(int(n)) + suffix


def num(n: float | None, digits: int = 1) -> str:
    """A number with `digits` decimals; - when unknown."""
    return "-" if n is None else f"{n:.{digits}f}"


def cells(v: VMStats | Usage) -> list[str]:
    """One VM's row, in the order of :data:`COLUMNS`."""
    mib = 1024**2
    return [
        v.name,
        v.state,
        num(v.cpu_percent),
        size(None if v.memory_used_mib is None else v.memory_used_mib * mib),
        size(None if v.memory_available_mib is None else v.memory_available_mib * mib),
        size(None if v.memory_rss_mib is None else v.memory_rss_mib * mib),
        size(v.disk_read_bps),
        size(v.disk_write_bps),
        num(v.disk_read_iops, 0),
        num(v.disk_write_iops, 0),
        size(v.net_rx_bps),
        size(v.net_tx_bps),
    ]
