"""Which door a request came through: the unix socket (root and group kvmhub only) or TCP.

Each listener gets its own thin wrapper around the one app that marks its requests, so the app can trust the
socket's file permissions for local callers and ask TCP callers for credentials.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

Transport = Literal["unix", "tcp"]
_KEY = "kvmhub.transport"


class Marked:
    """``app`` with every request marked as having come through ``transport``."""

    def __init__(self, app: ASGIApp, transport: Transport) -> None:
        self.app = app
        self.transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, _KEY: self.transport}
        await self.app(scope, receive, send)


def transport_of(conn: HTTPConnection) -> Transport:
    """How the request arrived; unmarked (an in-process test client) counts as TCP, the stricter door."""
    value = conn.scope.get(_KEY)
    return "unix" if value == "unix" else "tcp"
