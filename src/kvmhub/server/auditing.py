"""The one place mutating API calls are audited: an ASGI middleware around the whole app.

It sees each POST, PUT, PATCH and DELETE — refused ones too (401, 403, 413, 422) — and, once the answer is sent,
writes who (as :func:`kvmhub.server.auth.principal` named the caller), from where, what, and how it ended.
Before such an answer goes out, the kept VM listing is dropped (:func:`kvmhub.services.vm.listing.changed`), so
the caller's next listing shows what its call did; an answer that started an operation leaves that to the
operation, which marks the VM it acts on as it starts and ends.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kvmhub.ops.journal import Journal
from kvmhub.server import audit
from kvmhub.server.auth import CALLER_KEY, MUTATING
from kvmhub.server.routes.common import OPERATIONS
from kvmhub.server.transport import transport_of
from kvmhub.services.vm import listing

log = logging.getLogger(__name__)


class AuditLog:
    """Write an audit row for every mutating HTTP request ``app`` answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in MUTATING:
            await self.app(scope, receive, send)
            return
        caller: dict[str, Any] = {}
        scope = {**scope, CALLER_KEY: caller}  # the router adds its route and path parameters to this dict
        answer: dict[str, Any] = {"status": 500, "location": None}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                location = headers.get(b"location")
                answer["location"] = location.decode("latin-1") if location else None
                if not (answer["status"] == 202 and (answer["location"] or "").startswith(OPERATIONS + "/")):
                    listing.changed()  # an operation marks what it changes itself, as it starts and ends
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            try:
                await run_in_threadpool(_write, scope, caller, answer["status"], answer["location"])
            except Exception:  # the answer is sent already; a row lost is logged, not raised to the client
                log.exception("could not write the audit row for %s %s", scope.get("method"), scope.get("path"))


def _write(scope: Scope, caller: dict[str, Any], status: int, location: str | None) -> None:
    route = scope.get("route")
    params: dict[str, Any] = scope.get("path_params") or {}
    kind = getattr(route, "name", None)
    target = "/".join(str(v) for v in params.values()) or None
    operation = None
    if status == 202 and location and location.startswith(OPERATIONS + "/"):
        operation = location.rsplit("/", 1)[1]
        op = _journal(scope).get(operation)
        if op is not None:
            kind, target = op.kind, op.target
    client = scope.get("client")
    role = caller.get("role")
    audit.record(user=caller.get("user"), role=str(role) if role else None,
                 transport=transport_of(HTTPConnection(scope)), client=f"{client[0]}:{client[1]}" if client else None,
                 method=str(scope.get("method")),
                 path=str(scope.get("path")), kind=kind, target=target, status=status, operation=operation)


def _journal(scope: Scope) -> Journal:
    runner = getattr(getattr(getattr(scope.get("app"), "state", None), "runner", None), "journal", None)
    return runner if isinstance(runner, Journal) else Journal()
