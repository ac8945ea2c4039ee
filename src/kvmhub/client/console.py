"""A VM's serial console through the server: its WebSocket (``/vms/NAME/console``) pumped to and from the terminal.

Guest output arrives as binary messages and goes to standard output; keystrokes go out as binary messages until
Ctrl-] (the local console's escape key too) or until the server closes the console (the VM stopped).
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect, unix_connect

from kvmhub.client.transport import API, DEFAULT_SOCKET, Transport, cert_fingerprint
from kvmhub.errors import HostProblem, KvmhubError, from_dict
from kvmhub.tools import terminal

ESCAPE = terminal.ESCAPE  # the local console's escape key too


def open_console(transport: Transport, route: str) -> ClientConnection:
    """The console WebSocket at ``API+route`` on ``transport``'s server; a refusal raised as the error it was."""
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
        raise _refusal(exc) from None
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        if isinstance(exc, KvmhubError):
            raise
        raise HostProblem(f"cannot reach the kvmhub server at {transport.url}: {exc}",
                          hint="is it running? (`scripts/server.sh start`); or run the command with {opt:local}",
                          code="host.problem") from None
    seen = cert_fingerprint(_peer_cert(conn))
    if transport.fingerprint is not None and seen != transport.fingerprint:
        conn.close()
        raise HostProblem(f"the server at {parts.hostname} presented another certificate than the one pinned",
                          cause=f"pinned {transport.fingerprint}, presented {seen}",
                          hint="if the server's certificate was replaced on purpose, remove the remote and add it "
                               "again; otherwise do not send it your token", code="host.access_denied")
    return conn


def _peer_cert(conn: ClientConnection) -> bytes:
    sock = conn.socket
    return (sock.getpeercert(binary_form=True) or b"") if isinstance(sock, ssl.SSLSocket) else b""


def _refusal(exc: InvalidStatus) -> KvmhubError:
    status = exc.response.status_code
    try:
        payload = json.loads(exc.response.body or b"")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {"error": (exc.response.body or b"").decode(errors="replace") or f"HTTP {status}"}
    return from_dict(payload, status)


def attach(conn: ClientConnection, name: str, *, stdin_fd: int | None = None, stdout: Any = None) -> None:
    """Pump the terminal to and from ``conn`` until Ctrl-] or until the server ends the console."""
    in_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    out = stdout or sys.stdout.buffer
    stop = threading.Event()
    with conn:

        def pump_out() -> None:
            try:
                for message in conn:
                    out.write(message if isinstance(message, bytes) else message.encode())
                    out.flush()
            except (ConnectionClosed, OSError):
                pass
            finally:
                stop.set()

        reader = threading.Thread(target=pump_out, name="console-out", daemon=True)
        reader.start()
        try:
            terminal.send_keys(name, in_fd, out, conn.send, stop)
        except ConnectionClosed:
            pass
        finally:
            conn.close()
            reader.join(timeout=2)
