"""Consoles over WebSocket: the serial console (``/vms/{name}/console``) and the graphical one (``/vnc``).

The serial console is a libvirt stream pumped both ways: guest output as binary messages, client messages (text
or binary) as keystrokes; either side ending closes both. A VM that is missing, not running or without a serial
port is refused before the upgrade with the usual error body.

The graphical console is a small byte pump between the WebSocket and a socket libvirt connects to the VM's VNC
server (``virDomainOpenGraphicsFD``), authorised by a single-use token from ``POST /vms/{name}/vnc-token``.
websockify's library speaks WebSocket itself over a raw socket (its own handshake and framing on a socketserver
request handler); here the ASGI server has already done the handshake and frames the messages, so handing it
the connection would mean framing twice. What is left is copying bytes, which this module does. The proxy never
reads the RFB protocol: the VM's VNC password, when one is set, is checked between the client and QEMU.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Request, WebSocket
from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from kvmhub.server.auth import OPERATOR, VIEWER, Caller, principal
from kvmhub.server.console_tokens import ConsoleTokens, TokenRefused
from kvmhub.server.deps import Hv
from kvmhub.server.websocket import close, until_first
from kvmhub.services.vm import console
from kvmhub.validate import check_name

router = APIRouter(tags=["consoles"])
# the token is the credential of /vnc (a browser's VNC client sends no Authorization header)
token_router = APIRouter(tags=["consoles"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
CHUNK = 64 * 1024
IDLE_S = 0.02  # how long to wait before asking a non-blocking console stream again


class VncToken(BaseModel):
    """A single-use token for ``/api/v1/vnc?token=``; it expires at ``expires`` (epoch seconds)."""

    model_config = ConfigDict(extra="forbid")

    token: str
    vm: str
    expires: float
    path: str


class SerialLog(BaseModel):
    """What a VM printed on its serial port since it last started."""

    model_config = ConfigDict(extra="forbid")

    text: str


@router.get("/vms/{name}/console/log", response_model=SerialLog, dependencies=[VIEWER])
def serial_log(name: Name, hv: Hv) -> SerialLog:
    """The VM's serial log (ttyS0) as text; 503 when its host's files are out of the server's reach."""
    return SerialLog(text=console.log(hv, name))


def tokens(conn: HTTPConnection) -> ConsoleTokens:
    store: ConsoleTokens = conn.app.state.console_tokens
    return store


@router.websocket("/vms/{name}/console", dependencies=[OPERATOR])
async def serial_console(ws: WebSocket, name: Name, hv: Hv) -> None:
    """The VM's serial console: guest output arrives as binary messages, messages sent are typed into it."""
    check_name(name, "VM")
    stream = await anyio.to_thread.run_sync(console.open_stream, hv, name)
    await ws.accept()
    try:
        await until_first(lambda: _guest_to_client(ws, stream), lambda: _client_to_guest(ws, stream))
    finally:
        try:
            stream.abort()
        except Exception:  # noqa: S110 - the stream may already be closed by the VM stopping
            pass
    await close(ws, 1000, f"the console of {name} ended")


async def _guest_to_client(ws: WebSocket, stream: Any) -> None:
    while True:
        try:
            data = stream.recv(CHUNK)
        except Exception:  # the VM stopped: its stream is gone
            return
        if data == -2:
            await anyio.sleep(IDLE_S)
            continue
        if not data:
            return
        await ws.send_bytes(data)


async def _client_to_guest(ws: WebSocket, stream: Any) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data: bytes = message.get("bytes") or (message.get("text") or "").encode()
        while data:
            try:
                sent = stream.send(data)
            except Exception:  # the VM stopped: its stream is gone
                return
            if sent == -2:
                await anyio.sleep(IDLE_S)
                continue
            data = data[sent:]


@router.post("/vms/{name}/vnc-token", response_model=VncToken, dependencies=[OPERATOR])
def vnc_token(name: Name, hv: Hv, caller: Caller, request: Request) -> VncToken:
    """A token valid once, for a few seconds, for the caller to open this VM's VNC display at ``path``."""
    check_name(name, "VM")
    console.check_display(hv, name)
    grant = tokens(request).issue(caller.name, name)
    return VncToken(token=grant.token, vm=name, expires=grant.expires, path=f"/api/v1/vnc?token={grant.token}")


@token_router.websocket("/vnc")
async def vnc(ws: WebSocket, hv: Hv,
              token: Annotated[str, Query(min_length=1, max_length=200, description="from POST .../vnc-token")],
              vm: Annotated[str | None, Query(max_length=64, description="refuse the token unless it is for this VM")]
              = None) -> None:
    """The VM's VNC display (RFB over binary messages) for the holder of a token; the token is spent at once."""
    try:
        grant = tokens(ws).redeem(token, vm=vm, user=await _caller_name(ws))
    except TokenRefused as exc:
        raise HTTPException(401, str(exc)) from None
    sock = await anyio.to_thread.run_sync(console.open_display, hv, grant.vm)
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="binary" if "binary" in offered else None)  # noVNC asks for "binary"
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        raise
    try:
        await until_first(lambda: _display_to_client(ws, reader), lambda: _client_to_display(ws, writer))
    finally:
        writer.close()
    await close(ws, 1000, f"the display of {grant.vm} closed")


async def _caller_name(ws: WebSocket) -> str | None:
    """Who the connection itself names (then the token must be theirs); None when only the token speaks."""
    try:
        return (await principal(ws)).name
    except HTTPException:
        return None


async def _display_to_client(ws: WebSocket, reader: asyncio.StreamReader) -> None:
    while data := await reader.read(CHUNK):
        await ws.send_bytes(data)


async def _client_to_display(ws: WebSocket, writer: asyncio.StreamWriter) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        writer.write(message.get("bytes") or (message.get("text") or "").encode())
        await writer.drain()


