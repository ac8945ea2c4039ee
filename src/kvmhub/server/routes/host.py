"""``/hosts``: the host the server manages and what it can run."""

from __future__ import annotations

from fastapi import APIRouter

from kvmhub.hv import domains as hv_domains
from kvmhub.hv import is_local_uri
from kvmhub.models import HostReport, HostSummary
from kvmhub.server.auth import VIEWER
from kvmhub.server.deps import Hv
from kvmhub.services.host import accel, checks

router = APIRouter(prefix="/hosts", tags=["hosts"])


@router.get("", response_model=list[HostSummary], dependencies=[VIEWER])
def list_hosts(hv: Hv) -> list[HostSummary]:
    """The hosts the server manages (today the one, named ``local``): URI, host name, accelerator (null until
    ``GET /hosts/local`` has probed it), libvirt and hypervisor versions."""
    lib, hypervisor = hv_domains.versions(hv)
    probed = accel.cached() if is_local_uri(hv.uri) and not hv.uri.startswith("test:") else None
    return [HostSummary(name="local", uri=hv.uri, hostname=hv_domains.hostname(hv),
                        accelerator=probed.accelerator if probed else None, libvirt_version=lib,
                        hypervisor_version=hypervisor)]


@router.get("/local", response_model=HostReport, dependencies=[VIEWER])
def check_host(hv: Hv) -> HostReport:
    """The host's readiness report: accelerator, daemons, storage, network, firewall."""
    return checks.check(hv.uri)
