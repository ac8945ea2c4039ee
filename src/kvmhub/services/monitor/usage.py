"""What every VM is using, as plain rows: one getAllDomainStats per sample, rates from two samples.

The figures of `kvmhub top` without the wire model around them (:mod:`kvmhub.services.monitor.top` makes
:class:`~kvmhub.models.stats.VMStats` of them), so that a one-off sample need not load pydantic. Memory figures come
from the guest's balloon driver: kvmhub asks running VMs to report every ``BALLOON_PERIOD_S`` seconds the first
time it samples them without balloon statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

from kvmhub.errors import InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import stats as hv_stats
from kvmhub.hv.stats import RawDomainStats, Sample

ACTIVE = ("running", "paused", "shutting down")
Row = TypeVar("Row")


class Usage(NamedTuple):
    """One VM's usage; the fields of :class:`kvmhub.models.stats.VMStats`, in its order (a test holds them equal).
    A named tuple: see :mod:`kvmhub.hv.stats` for why not a dataclass."""

    name: str
    uuid: str
    state: str
    vcpus: int = 0
    cpu_time_s: float | None = None
    cpu_percent: float | None = None
    memory_mib: int | None = None
    memory_max_mib: int | None = None
    memory_used_mib: int | None = None
    memory_available_mib: int | None = None
    memory_rss_mib: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    disk_read_reqs: int | None = None
    disk_write_reqs: int | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    disk_read_iops: float | None = None
    disk_write_iops: float | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None

    def as_dict(self) -> dict[str, object]:
        """Its fields in order (all plain values)."""
        return self._asdict()


# sort key name -> (value of a row, descending by default); rows are Usage or VMStats
SORT_KEYS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "name": (lambda v: v.name, False),
    "state": (lambda v: (v.state, v.name), False),
    "cpu": (lambda v: v.cpu_percent or 0.0, True),
    "memory": (lambda v: v.memory_used_mib or v.memory_rss_mib or v.memory_mib or 0, True),
    "disk": (lambda v: (v.disk_read_bps or 0.0) + (v.disk_write_bps or 0.0), True),
    "iops": (lambda v: (v.disk_read_iops or 0.0) + (v.disk_write_iops or 0.0), True),
    "net": (lambda v: (v.net_rx_bps or 0.0) + (v.net_tx_bps or 0.0), True),
}


def _int(values: Mapping[str, Any], key: str) -> int | None:
    value = values.get(key)
    return None if value is None else int(value)


def _sum(values: Mapping[str, Any], group: str, field: str) -> int | None:
    """Sum `<group>.<i>.<field>` over every device of a group (block, net); None if it has no device."""
    count = _int(values, f"{group}.count")
    if not count:
        return None
    found = [values.get(f"{group}.{i}.{field}") for i in range(count)]
    numbers = [int(v) for v in found if v is not None]
    return sum(numbers) if numbers else None


def _mib(kib: int | None) -> int | None:
    return None if kib is None else kib // 1024


def _rate(now: int | float | None, before: int | float | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0 or now < before:
        return None  # a counter that went backwards means the VM restarted between samples
    return round((now - before) / seconds, 2)


def totals(raw: RawDomainStats) -> Usage:
    """One VM's cumulative counters from one sample (no rates)."""
    v = raw.values
    balloon_total = _int(v, "balloon.available")
    usable = _int(v, "balloon.usable")
    free = usable if usable is not None else _int(v, "balloon.unused")
    used = balloon_total - free if balloon_total is not None and free is not None else None
    cpu_ns = _int(v, "cpu.time")
    return Usage(
        name=raw.name,
        uuid=raw.uuid,
        state=raw.state,
        vcpus=_int(v, "vcpu.current") or 0,
        cpu_time_s=None if cpu_ns is None else round(cpu_ns / 1e9, 3),
        memory_mib=_mib(_int(v, "balloon.current")),
        memory_max_mib=_mib(_int(v, "balloon.maximum")),
        memory_used_mib=_mib(used),
        memory_available_mib=_mib(free),
        memory_rss_mib=_mib(_int(v, "balloon.rss")),
        disk_read_bytes=_sum(v, "block", "rd.bytes"),
        disk_write_bytes=_sum(v, "block", "wr.bytes"),
        disk_read_reqs=_sum(v, "block", "rd.reqs"),
        disk_write_reqs=_sum(v, "block", "wr.reqs"),
        net_rx_bytes=_sum(v, "net", "rx.bytes"),
        net_tx_bytes=_sum(v, "net", "tx.bytes"),
    )


def compute(before: Sample | None, after: Sample) -> list[Usage]:
    """Every VM of `after`, with rates over the time since `before` for VMs active in both samples."""
    earlier = {d.uuid: d for d in before.domains} if before is not None else {}
    seconds = after.at - before.at if before is not None else 0.0
    out = []
    for raw in after.domains:
        row = totals(raw)
        prev = earlier.get(raw.uuid)
        if prev is not None and raw.state in ACTIVE and prev.state in ACTIVE:
            old = totals(prev)
            cpu = _rate(_int(raw.values, "cpu.time"), _int(prev.values, "cpu.time"), seconds)
            row = row._replace(
                cpu_percent=None if cpu is None else round(cpu / 1e9 * 100.0, 1),
                disk_read_bps=_rate(row.disk_read_bytes, old.disk_read_bytes, seconds),
                disk_write_bps=_rate(row.disk_write_bytes, old.disk_write_bytes, seconds),
                disk_read_iops=_rate(row.disk_read_reqs, old.disk_read_reqs, seconds),
                disk_write_iops=_rate(row.disk_write_reqs, old.disk_write_reqs, seconds),
                net_rx_bps=_rate(row.net_rx_bytes, old.net_rx_bytes, seconds),
                net_tx_bps=_rate(row.net_tx_bytes, old.net_tx_bytes, seconds),
            )
        out.append(row)
    return out


def sort_rows(rows: Iterable[Row], key: str = "cpu", *, reverse: bool = False) -> list[Row]:
    """Rows ordered by `key` (one of SORT_KEYS): busiest first for usage keys, A-Z for name and state."""
    if key not in SORT_KEYS:
        raise InvalidInput(f"cannot sort by {key!r}", hint=f"sort by one of: {', '.join(SORT_KEYS)}")
    value, descending = SORT_KEYS[key]
    by_name = sorted(rows, key=lambda v: str(getattr(v, "name", "")))
    return sorted(by_name, key=value, reverse=descending != reverse)


class Sampler:
    """Successive samples of every VM; each :meth:`refresh` is one getAllDomainStats call."""

    def __init__(self, hv: Hypervisor, *, balloon: bool = True) -> None:
        self.hv = hv
        self.balloon = balloon
        self.previous: Sample | None = None
        self._asked: set[str] = set()

    def refresh(self) -> list[Usage]:
        """Take a sample; rates are over the time since the previous one (None on the first)."""
        current = hv_stats.sample(self.hv)
        if self.balloon:
            self._enable_balloon(current)
        rows = compute(self.previous, current)
        self.previous = current
        return rows

    def _enable_balloon(self, current: Sample) -> None:
        """Ask once per VM for balloon reports where the guest sends none yet."""
        missing = [
            d.name
            for d in current.domains
            if d.state == "running" and "balloon.last-update" not in d.values and d.uuid not in self._asked
        ]
        if missing:
            self._asked.update(d.uuid for d in current.domains if d.name in missing)
            hv_stats.enable_balloon_stats(self.hv, missing)


def once(hv: Hypervisor, interval: float = 1.0) -> list[Usage]:
    """Two samples `interval` seconds apart (one getAllDomainStats each); every VM with its rates."""
    if interval < 0:
        raise InvalidInput(f"interval {interval} s is negative", hint="use {opt:interval} 1 (seconds)")
    sampler = Sampler(hv)
    first = sampler.refresh()
    if interval == 0:
        return first
    time.sleep(interval)
    return sampler.refresh()
