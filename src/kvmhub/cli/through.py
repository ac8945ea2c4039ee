"""Commands in client mode: the same request as the library call, sent to the server (see ``state.remote``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models import OperationInfo
    from kvmhub.reporting import Reporter


def path(*parts: str) -> str:
    """``/a/b`` with each part escaped, so a name can never reach another route."""
    return "".join("/" + quote(p, safe="") for p in parts)


def get(transport: Transport, *parts: str, query: str = "") -> Any:
    return transport.request("GET", path(*parts) + (f"?{query}" if query else ""))


def operation(transport: Transport, method: str, route: str, report: Reporter, body: Any = None) -> Any:
    """Start the operation at ``route`` and follow it to its end; its result (its error raised)."""
    return finished(transport, method, route, report, body).result


def finished(transport: Transport, method: str, route: str, report: Reporter, body: Any = None) -> OperationInfo:
    """Start the operation at ``route`` and follow it to its end: the finished operation."""
    from kvmhub.client.operations import follow

    return follow(transport, transport.request(method, route, body), report)
