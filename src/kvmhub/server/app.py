"""The FastAPI application: routers under ``/api/v1``, errors in one shape, operations recovered at start."""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kvmhub.hv import Hypervisor
from kvmhub.server import errors
from kvmhub.server.auditing import AuditLog
from kvmhub.server.auth import principal
from kvmhub.server.bus import EventBus
from kvmhub.server.console_tokens import ConsoleTokens
from kvmhub.server.lifecycle_events import LifecycleFeed
from kvmhub.server.query import known_query
from kvmhub.server.routes import (
    accounts,
    audit,
    backups,
    consoles,
    customize,
    devices,
    disks,
    events,
    exports,
    forwards,
    guest,
    host,
    images,
    metrics,
    networks,
    nics,
    operations,
    pools,
    projects,
    session,
    shares,
    snapshots,
    templates,
    vms,
    volumes,
)
from kvmhub.server.runner import Runner
from kvmhub.server.settings import MAX_BODY_BYTES, ServerSettings
from kvmhub.services import repair

log = logging.getLogger(__name__)
API = "/api/v1"


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The server's app for ``settings`` (its libvirt URI, limits)."""
    conf = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # operations a previous server left running are taken back before new ones start
        for outcome in repair.recover_orphans():
            log.warning("recovered interrupted operation %s (%s %s): %s", outcome.op.id, outcome.op.kind,
                        outcome.op.target, outcome.state)
        app.state.hv = Hypervisor(conf.uri, timeout=conf.libvirt_timeout)
        app.state.bus = EventBus()
        app.state.runner = Runner(conf.uri, app.state.bus)
        app.state.console_tokens = ConsoleTokens()
        feed = LifecycleFeed(app.state.hv, app.state.bus, app.state.runner)
        feed.start()
        # what start-up made (modules, routes, models) lives as long as the server: kept out of the collector's
        # full passes, which would otherwise walk all of it and stall requests for tens of milliseconds
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            feed.stop()
            app.state.hv.close()

    app = FastAPI(title="kvmhub", version="1", summary="KVM/QEMU virtual machines through libvirt",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None, lifespan=lifespan,
                  dependencies=[Depends(known_query)])
    errors.install(app)
    # routers with paths /vms/{name}/WORD before vms, whose POST /vms/{name}/{action} would take them
    for module in (host, consoles, snapshots, backups, disks, nics, exports, forwards, guest, shares, customize,
                   devices, vms,
                   operations, events, images, networks, pools, volumes, metrics, accounts, audit, projects,
                   templates):
        app.include_router(module.router, prefix=API, dependencies=[Depends(principal)], responses=errors.RESPONSES)
    app.include_router(consoles.token_router, prefix=API)  # its single-use token is the credential
    # logging in needs no credentials yet; its other routes ask for them themselves
    app.include_router(session.router, prefix=API, responses=errors.RESPONSES)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES,
                       streamed=re.compile(f"{volumes.STREAMED_BODIES.pattern}|{guest.STREAMED_BODIES.pattern}"))
    app.add_middleware(AuditLog)  # outermost: it sees refused and oversized requests too
    return app


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before a handler reads them; ``PUT`` to a path
    ``streamed`` matches is let through (such a handler bounds the body itself)."""

    def __init__(self, app: ASGIApp, limit: int, streamed: re.Pattern[str] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exempt = self.streamed is not None and scope.get("method") == "PUT" and self.streamed.match(scope["path"])
        if scope["type"] != "http" or exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(errors.ErrorBody(code="input.too_large", error=f"request body over {limit} bytes").model_dump())
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})
