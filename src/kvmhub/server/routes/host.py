"""``/hosts``: the host the server manages and what it can run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from kvmhub.hv import domains as hv_domains
from kvmhub.hv import host_files_here
from kvmhub.models import HostReport, HostSummary, OSInfo, OSProfile
from kvmhub.models.stats import HostStats, VMStats
from kvmhub.server.auth import VIEWER
from kvmhub.server.deps import Hv
from kvmhub.services.host import accel, checks
from kvmhub.services.host import stats as host_stats
from kvmhub.services.monitor import top
from kvmhub.services.vm import osinfo

router = APIRouter(prefix="/hosts", tags=["hosts"])


@router.get("", response_model=list[HostSummary], dependencies=[VIEWER])
def list_hosts(hv: Hv) -> list[HostSummary]:
    """The hosts the server manages (today the one, named ``local``): URI, host name, accelerator (null until
    ``GET /hosts/local`` has probed it), libvirt and hypervisor versions."""
    lib, hypervisor = hv_domains.versions(hv)
    probed = accel.cached() if host_files_here(hv.uri) else None
    return [HostSummary(name="local", uri=hv.uri, hostname=hv_domains.hostname(hv),
                        accelerator=probed.accelerator if probed else None, libvirt_version=lib,
                        hypervisor_version=hypervisor)]


@router.get("/local", response_model=HostReport, dependencies=[VIEWER])
def check_host(hv: Hv, reprobe: Annotated[bool, Query(description="boot the KVM probe again")] = False
               ) -> HostReport:
    """The host's readiness report: accelerator, daemons, storage, network, firewall."""
    return checks.check(hv.uri, reprobe=reprobe)


@router.get("/local/stats", response_model=HostStats, dependencies=[VIEWER])
def stats_of_host(hv: Hv) -> HostStats:
    """CPU, memory, overcommit (VM memory / host memory), KSM, huge pages and temperatures of the host."""
    return host_stats.host_stats(hv)


@router.get("/local/vm-stats", response_model=list[VMStats], dependencies=[VIEWER])
def stats_of_vms(hv: Hv, interval: Annotated[float, Query(
        ge=0.0, le=10.0, description="seconds between the two samples the rates are taken from")] = 1.0,
                 sort: Annotated[str, Query(max_length=16, description=f"one of {', '.join(top.SORT_KEYS)}")] = "cpu",
                 reverse: Annotated[bool, Query(description="reverse the order")] = False) -> list[VMStats]:
    """Every VM's CPU %, memory, disk and network rates, as ``kvmhub top`` shows them."""
    top.sort_rows([], sort)  # an unknown key is refused before sampling
    return top.sort_rows(top.top_once(hv, interval), sort, reverse=reverse)


@router.get("/local/os", response_model=list[OSInfo], dependencies=[VIEWER])
def list_os(filter: Annotated[str | None, Query(max_length=64, description="part of a short id, name, distro")]
            = None) -> list[OSInfo]:
    """The OS variants the host's osinfo-db knows (for a VM's ``os``)."""
    return osinfo.list_os(filter)


@router.get("/local/os/{variant}", response_model=OSProfile, dependencies=[VIEWER])
def show_os(variant: Annotated[str, Path(min_length=1, max_length=64, description="a short id, e.g. debian11")]
            ) -> OSProfile:
    """The devices, machine type and sizes a VM of this OS gets (with the fallback used, if any)."""
    return osinfo.resolve(variant)
