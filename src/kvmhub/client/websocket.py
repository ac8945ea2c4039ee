"""A WebSocket to a kvmhub server (consoles, events, exec): over its unix socket, or TCP with the certificate
pinned at `kvmhub remote add`, with the token as the HTTP client sends it; a refusal raised as the error it was."""

from __future__ import annotations

import json
import ssl
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect, unix_connect

from kvmhub.client.transport import API, DEFAULT_SOCKET, Transport, cert_fingerprint
from kvmhub.errors import HostProblem, KvmhubError, from_dict


def open_websocket(transport: Transport, route: str) -> ClientConnection:
    """The WebSocket at ``API+route`` (path and query) on ``transport``'s server."""
    parts = urlsplit(transport.url)
    headers = {"Authorization": f"Bearer {transport.token}"} if transport.token else None
    try:
        if parts.scheme == "unix":
            return unix_connect(parts.path or DEFAULT_SOCKET, f"ws://localhost{API}{route}",
                                additional_headers=headers, open_timeout=transport.timeout)
        if parts.scheme == "http":
            return connect(f"ws://{parts.netloc}{API}{route}", additional_headers=headers,
                           open_timeout=transport.timeout)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin below replaces the CA check
        conn = connect(f"wss://{parts.netloc}{API}{route}", ssl=context, additional_headers=headers,
                       open_timeout=transport.timeout)
    except InvalidStatus as exc:
        raise refusal(exc) from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        if isinstance(exc, KvmhubError):
            raise
        raise HostProblem(f"cannot reach the kvmhub server at {transport.url}: {exc}",
                          hint="is it running? (`scripts/server.sh start`); or run the command with {opt:local}",
                          code="host.problem") from None
    sock = conn.socket
    seen = cert_fingerprint(sock.getpeercert(binary_form=True) or b"") if isinstance(sock, ssl.SSLSocket) else ""
    if transport.fingerprint is not None and seen != transport.fingerprint:
        conn.close()
        raise HostProblem(f"the server at {parts.hostname} presented another certificate than the one pinned",
                          cause=f"pinned {transport.fingerprint}, presented {seen}",
                          hint="if the server's certificate was replaced on purpose, remove the remote and add it "
                               "again; otherwise do not send it your token", code="host.access_denied")
    return conn


def refusal(exc: InvalidStatus) -> KvmhubError:
    """The error a server's refused handshake carried (its JSON error body, else its text)."""
    status, body = exc.response.status_code, exc.response.body or b""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {"error": body.decode(errors="replace") or f"HTTP {status}"}
    return from_dict(payload, status)
