"""``/hosts``: the host the server manages and what it can run."""

from __future__ import annotations

from fastapi import APIRouter

from kvmhub.models import HostReport
from kvmhub.server.auth import VIEWER
from kvmhub.server.deps import Hv
from kvmhub.services.host import checks

router = APIRouter(prefix="/hosts", tags=["hosts"])


@router.get("/local", response_model=HostReport, dependencies=[VIEWER])
def check_host(hv: Hv) -> HostReport:
    """The host's readiness report: accelerator, daemons, storage, network, firewall."""
    return checks.check(hv.uri)
