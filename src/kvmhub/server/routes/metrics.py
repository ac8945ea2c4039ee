"""``/metrics``: per-VM and host metrics in Prometheus's text format, as ``kvmhub metrics`` serves them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kvmhub.server.auth import VIEWER
from kvmhub.server.deps import Hv
from kvmhub.services.monitor import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, dependencies=[VIEWER],
            responses={200: {"description": "Prometheus text exposition", "content": {"text/plain": {}}}})
def prometheus_metrics(hv: Hv) -> Response:
    """Every VM's CPU, memory, disk and network counters and the host's, for a Prometheus scrape; names are
    listed in README.md ("Metrics")."""
    return Response(generate_latest(metrics.registry(hv)), media_type=CONTENT_TYPE_LATEST)
