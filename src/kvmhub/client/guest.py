"""A guest file's bytes out of a server (``GET /vms/{name}/files?path=``), reported as BytesEvents so the CLI
draws the same progress bar as when it reads the guest itself."""

from __future__ import annotations

import http.client
from typing import BinaryIO
from urllib.parse import urlencode

from kvmhub.client import streams
from kvmhub.client.transport import Transport
from kvmhub.models.guest import GuestFileInfo
from kvmhub.reporting import QUIET, Reporter

SIZE_HEADER = "X-Kvmhub-Size"
MODE_HEADER = "X-Kvmhub-Mode"


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
        return GuestFileInfo(path=path, size=done, mode=int(mode, 8) if mode else None)
    except (OSError, http.client.HTTPException) as exc:
        raise streams._unreachable(transport, exc) from None
    finally:
        conn.close()
