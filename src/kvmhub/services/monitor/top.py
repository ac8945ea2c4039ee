"""What every VM is using (`kvmhub top`), as :class:`~kvmhub.models.stats.VMStats`: the rows of
:mod:`kvmhub.services.monitor.usage` (one getAllDomainStats per sample, rates from two samples) as wire models."""

from __future__ import annotations

from kvmhub.hv import Hypervisor
from kvmhub.hv.stats import RawDomainStats, Sample
from kvmhub.models.stats import VMStats
from kvmhub.services.monitor import usage
from kvmhub.services.monitor.usage import ACTIVE, SORT_KEYS, sort_rows

__all__ = ["ACTIVE", "SORT_KEYS", "Sampler", "compute", "sort_rows", "top_once", "totals"]


def _model(row: usage.Usage) -> VMStats:
    return VMStats(**row._asdict())


def totals(raw: RawDomainStats) -> VMStats:
    """One VM's cumulative counters from one sample (no rates)."""
    return _model(usage.totals(raw))


def compute(before: Sample | None, after: Sample) -> list[VMStats]:
    """Every VM of `after`, with rates over the time since `before` for VMs active in both samples."""
    return [_model(r) for r in usage.compute(before, after)]


class Sampler:
    """Successive samples of every VM; each :meth:`refresh` is one getAllDomainStats call."""

    def __init__(self, hv: Hypervisor, *, balloon: bool = True) -> None:
        self._rows = usage.Sampler(hv, balloon=balloon)

    def refresh(self) -> list[VMStats]:
        """Take a sample; rates are over the time since the previous one (None on the first)."""
        return [_model(r) for r in self._rows.refresh()]


def top_once(hv: Hypervisor, interval: float = 1.0) -> list[VMStats]:
    """Two samples `interval` seconds apart (one getAllDomainStats each); every VM with its rates."""
    return [_model(r) for r in usage.once(hv, interval)]
