"""A command in a guest through a server, its output streamed (the ``/vms/{name}/exec`` WebSocket); a guest
file's bytes out of a server (``GET /vms/{name}/files?path=``), reported as BytesEvents so the CLI draws the
same progress bar as when it reads the guest itself."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from kvmhub.client import streams
from kvmhub.client.transport import Transport
from kvmhub.client.websocket import open_websocket
from kvmhub.errors import HostProblem, from_dict
from kvmhub.models.guest import GuestFileInfo
from kvmhub.reporting import QUIET, Reporter

SIZE_HEADER = "X-Kvmhub-Size"
MODE_HEADER = "X-Kvmhub-Mode"
VIA_HEADER = "X-Kvmhub-Via"
STDOUT = 1


def exec_stream(transport: Transport, route: str, request: dict[str, Any], out: Callable[[bytes], None],
                err: Callable[[bytes], None]) -> int:
    """Run ``request`` (an ExecRequest as JSON data) over the WebSocket at ``API+route``, its output passed to
    ``out`` and ``err`` as it comes; the command's exit code (an error the server answered raised as it was)."""
    conn = open_websocket(transport, route)
    with conn:
        try:
            conn.send(json.dumps(request))
            for message in conn:
                if isinstance(message, bytes):
                    (out if message[:1] == bytes([STDOUT]) else err)(message[1:])
                    continue
                final = json.loads(message)
                if isinstance(final.get("error"), dict):
                    raise from_dict(final["error"], int(final.get("status") or 500))
                return int(final["exit_code"])
        except (ConnectionClosed, OSError) as exc:
            raise HostProblem(f"the command's stream from the kvmhub server at {transport.url} broke off: {exc}",
                              hint="run it again, or with {opt:local}") from None
    raise HostProblem(f"the kvmhub server at {transport.url} ended the command's stream without its exit code",
                      hint="look at the server's log; run the command again, or with {opt:local}")


def download(transport: Transport, route: str, path: str, dst: BinaryIO, *, what: str,
             report: Reporter = QUIET) -> GuestFileInfo:
    """Write guest file ``path`` (from ``GET API+route?path=``) into ``dst``; its path, bytes and mode."""
    conn = streams._open(transport, "GET", f"{route}?{urlencode({'path': path})}", {})
    try:
        answer = conn.getresponse()
        if answer.status >= 400:
            raise streams._error(answer.status, answer.read())
        size = int(answer.getheader(SIZE_HEADER) or 0)
        mode = answer.getheader(MODE_HEADER)
        done = 0
        report.bytes(what, 0, size)
        while chunk := answer.read(streams.CHUNK):
            dst.write(chunk)
            done += len(chunk)
            report.bytes(what, done, max(size, done))
        via = answer.getheader(VIA_HEADER)
        return GuestFileInfo(path=path, size=done, mode=int(mode, 8) if mode else None,
                             via="ssh" if via == "ssh" else "agent" if via == "agent" else None)
    except (OSError, http.client.HTTPException) as exc:
        raise streams._unreachable(transport, exc) from None
    finally:
        conn.close()
