"""What the WebSocket routes share: running a stream until either side ends it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState


async def until_first(*work: Callable[[], Awaitable[None]]) -> None:
    """Run each of ``work`` concurrently until one of them returns (or fails); the others are cancelled.

    A peer that left while one was writing to it (the client, or the socket behind) ends them all like a return.
    """
    async with anyio.create_task_group() as group:

        async def run(fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await fn()
            except (WebSocketDisconnect, OSError):
                pass
            group.cancel_scope.cancel()

        for fn in work:
            group.start_soon(run, fn)


async def client_gone(ws: WebSocket) -> None:
    """Return once the client closes its side; what else it sends is ignored."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def close(ws: WebSocket, code: int = 1000, reason: str = "") -> None:
    """Close the WebSocket unless either side already has."""
    if ws.application_state is WebSocketState.CONNECTED and ws.client_state is WebSocketState.CONNECTED:
        try:
            await ws.close(code, reason[:120])  # a close frame's reason holds at most 123 bytes
        except RuntimeError:  # the client left meanwhile
            pass
