"""``/vms/{name}/exec`` and ``/vms/{name}/files``: a command run in a guest (answered when it ends, or streamed
over a WebSocket), and a guest file's bytes sent in (``PUT``) or read out (``GET``), through the guest agent."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Path, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from kvmhub.errors import InvalidInput, KvmhubError
from kvmhub.models.guest import ExecRequest, ExecResult, GuestFileInfo
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR
from kvmhub.server.deps import Hv
from kvmhub.server.errors import body_of, status_of
from kvmhub.server.routes.common import NAME_CHARS
from kvmhub.server.websocket import client_gone, close
from kvmhub.services.storage import volume_streams
from kvmhub.services.vm import guest_exec, guest_files

router = APIRouter(prefix="/vms/{name}", tags=["guest"])
Name = Annotated[str, Path(min_length=1, max_length=64, pattern=NAME_CHARS, description="the VM's name")]
GuestPath = Annotated[str, Query(min_length=1, max_length=guest_files.MAX_PATH,
                                 description="the file's absolute path in the guest")]
# request bodies the body limit lets through: the guest's disk bounds them
STREAMED_BODIES = re.compile(r"^/api/v1/vms/[^/]+/files$")
READ_TIMEOUT = 300.0  # a client that sends nothing for this long has its upload abandoned
STDOUT, STDERR = 1, 2  # the first byte of a streamed output message: which stream the rest is from
SEND_TIMEOUT = 300.0  # a client that takes no output for this long has its command killed
SIZE_HEADER = "X-Kvmhub-Size"
MODE_HEADER = "X-Kvmhub-Mode"
VIA_HEADER = "X-Kvmhub-Via"
_BINARY: dict[str, Any] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.post("/exec", response_model=ExecResult, dependencies=[OPERATOR])
def exec_command(name: Name, req: ExecRequest, hv: Hv) -> ExecResult:
    """Run ``argv`` in the running VM through its guest agent and answer when it ends: its exit code (128+N when
    signal N killed it), stdout and stderr as base64. A program the guest lacks is a 404 ``guest.not_found``; a
    command running past ``timeout`` is killed and answered 504; a VM without an answering agent, 409."""
    ended, out, err = guest_exec.run_captured(hv, name, req)
    return ExecResult(exit_code=ended.exit_code, signal=ended.signal, stdout=base64.b64encode(out).decode(),
                      stderr=base64.b64encode(err).decode())


@router.websocket("/exec", dependencies=[OPERATOR])
async def exec_stream(ws: WebSocket, name: Name, hv: Hv) -> None:
    """The command of the first message (an ExecRequest as JSON), its output streamed: binary messages whose first
    byte is 1 (stdout) or 2 (stderr), then one text message, ``{"exit_code": N, "signal": S}``, or ``{"status":
    HTTP status, "error": error body}`` when it could not run or ran past its timeout (it was killed). A client
    that leaves (or closes its side) has the command killed."""
    await ws.accept()
    try:
        req = ExecRequest.model_validate_json(await ws.receive_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = InvalidInput(f"{'.'.join(str(p) for p in first['loc']) or 'request'}: {first['msg']}")
        await ws.send_text(json.dumps({"status": status_of(problem), "error": body_of(problem)}))
        await close(ws, 1000, "refused")
        return
    loop = asyncio.get_running_loop()

    def sender(stream: int) -> guest_exec.Sink:
        def send(data: bytes) -> None:
            asyncio.run_coroutine_threadsafe(ws.send_bytes(bytes([stream]) + data), loop).result(SEND_TIMEOUT)

        return send

    report = Reporter()

    def work() -> guest_exec.Ended:
        return guest_exec.run(hv, name, req, out=sender(STDOUT), err=sender(STDERR), report=report)

    async def watch() -> None:
        await client_gone(ws)
        report.cancel.cancel("stopped: the client left")

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            result = await anyio.to_thread.run_sync(work)
            final: dict[str, Any] = {"exit_code": result.exit_code, "signal": result.signal}
        except KvmhubError as exc:
            final = {"status": status_of(exc), "error": body_of(exc)}
        except Exception:  # the client left while its output was sent: the command was killed on the way out
            final = {}
        group.cancel_scope.cancel()
    if final and not report.cancel.cancelled:
        await ws.send_text(json.dumps(final))
    await close(ws, 1000, "done")


@router.put("/files", response_model=GuestFileInfo, status_code=201, dependencies=[OPERATOR],
            openapi_extra={"requestBody": {"required": True, "content": _BINARY}})
async def put_file(name: Name, path: GuestPath, request: Request, hv: Hv,
                   mode: Annotated[str | None, Query(pattern=r"^[0-7]{1,4}$",
                                                     description="permission bits, octal (e.g. 644)")] = None,
                   ) -> GuestFileInfo:
    """Send the body (its length in ``Content-Length``) into the guest file ``path``, replacing a file there,
    never a directory (409 ``guest.is_directory``); a missing directory is a 404 ``guest.not_found``. The file is
    put in place only once whole."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise HTTPException(411, "send the body's length in Content-Length")
    guest_files.check_path(path)
    loop = asyncio.get_running_loop()
    body = request.stream().__aiter__()

    def next_chunk() -> bytes:
        return asyncio.run_coroutine_threadsafe(_next(body), loop).result(READ_TIMEOUT)

    def push() -> GuestFileInfo:
        return guest_files.push(hv, name, volume_streams.Reader(next_chunk), int(declared), path,
                                mode=None if mode is None else int(mode, 8))

    return await anyio.to_thread.run_sync(push)


async def _next(body: AsyncIterator[bytes]) -> bytes:
    return await anext(body, b"")


@router.get("/files", response_class=StreamingResponse, dependencies=[OPERATOR],
            responses={200: {"description": "the file's bytes; its size, mode and how they are read (agent "
                                            "or ssh) in the X-Kvmhub-Size, X-Kvmhub-Mode and X-Kvmhub-Via "
                                            "headers", "content": _BINARY}})
def get_file(name: Name, path: GuestPath, hv: Hv) -> StreamingResponse:
    """The guest file ``path``, streamed as it is read (404 ``guest.not_found`` when it is missing, 409
    ``guest.is_directory`` for a directory)."""
    info, chunks = guest_files.open_source(hv, name, path)
    headers = {SIZE_HEADER: str(info.size)}
    if info.mode is not None:
        headers[MODE_HEADER] = f"{info.mode:o}"
    if info.via is not None:
        headers[VIA_HEADER] = info.via
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
