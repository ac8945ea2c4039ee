"""A file's bytes to and from a server's volume (``PUT``/``GET /pools/{pool}/volumes/{name}/data``), reported
as BytesEvents so the CLI draws the same progress bars as for a local transfer."""

from __future__ import annotations

import http.client
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from kvmhub.client.transport import API, Transport
from kvmhub.errors import HostProblem, KvmhubError, from_dict
from kvmhub.reporting import QUIET, Reporter

CHUNK = 1024 * 1024


def upload(transport: Transport, route: str, src: BinaryIO, length: int, *, what: str,
           report: Reporter = QUIET) -> Any:
    """Send ``length`` bytes of ``src`` as the body of ``PUT API+route``; the JSON answer (an error raised)."""
    conn = _open(transport, "PUT", route, {"Content-Type": "application/octet-stream",
                                           "Content-Length": str(length)})
    try:
        sent = 0
        report.bytes(what, 0, length)
        try:
            while sent < length:
                chunk = src.read(min(CHUNK, length - sent))
                if not chunk:
                    break
                conn.send(chunk)
                sent += len(chunk)
                report.bytes(what, sent, length)
        except OSError:
            pass  # a server that refused the upload early closed its end: its answer says why
        return _answer(transport, conn)
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(transport, exc) from None
    finally:
        conn.close()


def download(transport: Transport, route: str, dst: BinaryIO, *, what: str, total: int,
             report: Reporter = QUIET) -> int:
    """Write the body of ``GET API+route`` into ``dst``; the bytes written (an error answer raised)."""
    conn = _open(transport, "GET", route, {})
    try:
        answer = conn.getresponse()
        if answer.status >= 400:
            raise _error(answer.status, answer.read())
        done = 0
        report.bytes(what, 0, total)
        while chunk := answer.read(CHUNK):
            dst.write(chunk)
            done += len(chunk)
            report.bytes(what, done, max(total, done))
        return done
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(transport, exc) from None
    finally:
        conn.close()


def file_facts(path: Path) -> tuple[bool, int]:
    """Whether ``path`` is a regular file, and its size (what sizes the volume it is sent into)."""
    st = os.stat(path)
    return stat.S_ISREG(st.st_mode), st.st_size


def _open(transport: Transport, method: str, route: str, headers: dict[str, str]) -> http.client.HTTPConnection:
    headers = {"Accept": "application/json", **headers}
    if transport.token:
        headers["Authorization"] = f"Bearer {transport.token}"
    conn = transport.connection(transport.timeout)
    try:
        conn.putrequest(method, API + route, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise _unreachable(transport, exc) from None
    return conn


def _answer(transport: Transport, conn: http.client.HTTPConnection) -> Any:
    answer = conn.getresponse()
    raw = answer.read()
    if answer.status >= 400:
        raise _error(answer.status, raw)
    return json.loads(raw) if raw else None


def _error(status: int, raw: bytes) -> KvmhubError:
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    return from_dict(payload if isinstance(payload, dict) else {"error": raw.decode(errors="replace")}, status)


def _unreachable(transport: Transport, exc: Exception) -> KvmhubError:
    if isinstance(exc, KvmhubError):
        return exc
    return HostProblem(f"the transfer with the kvmhub server at {transport.url} broke off: {exc}",
                       hint="is it running? run the command again, or with {opt:local}", code="host.problem")
