"""Talking to a kvmhub server: over its unix socket, or HTTPS with the certificate pinned by fingerprint.

Plain ``http.client`` (the CLI starts in milliseconds; a full HTTP client library would cost more than the
request). Error answers come back as the exceptions they were on the server (same kind, code, cause and hint,
phrased with the CLI's flags), so a command exits with the same code through the server as without it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from kvmhub.client.local import DEFAULT_SOCKET as DEFAULT_SOCKET
from kvmhub.errors import HostProblem, InvalidInput, KvmhubError, from_dict

API = "/api/v1"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTPS that trusts exactly one certificate: the one whose SHA-256 fingerprint was pinned at `remote add`."""

    def __init__(self, host: str, port: int | None, fingerprint: str | None, timeout: float) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the pin below replaces the CA check
        super().__init__(host, port, timeout=timeout, context=context)
        self.fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        seen = cert_fingerprint(self.sock.getpeercert(binary_form=True) or b"")
        if self.fingerprint is not None and seen != self.fingerprint:
            self.sock.close()
            raise HostProblem(f"the server at {self.host} presented another certificate than the one pinned",
                              cause=f"pinned {self.fingerprint}, presented {seen}",
                              hint="if the server's certificate was replaced on purpose, remove the remote and "
                                   "add it again; otherwise do not send it your token",
                              code="host.access_denied")


def cert_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).digest().hex(":").upper()


class Transport:
    """One server: ``unix:/path`` or ``https://host:port`` (``http://`` only for a server run --insecure-http)."""

    def __init__(self, url: str, *, token: str | None = None, fingerprint: str | None = None,
                 timeout: float = 60.0) -> None:
        self.url = url
        self.token = token
        self.fingerprint = fingerprint
        self.timeout = timeout
        parts = urlsplit(url)
        if parts.scheme not in ("unix", "https", "http"):
            raise InvalidInput(f"remote URL {url!r} is not unix:/PATH, https://HOST:PORT or http://HOST:PORT")
        self._parts = parts

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        p = self._parts
        if p.scheme == "unix":
            return _UnixConnection(p.path or DEFAULT_SOCKET, timeout)
        if p.scheme == "https":
            return _PinnedConnection(p.hostname or "localhost", p.port, self.fingerprint, timeout)
        return http.client.HTTPConnection(p.hostname or "localhost", p.port, timeout=timeout)

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A new connection to the server (for bodies streamed rather than sent as JSON)."""
        return self._connection(timeout or self.timeout)

    def request(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        """The JSON answer of ``method API+path``; an error answer raised as the error it was."""
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return self._exchange(method, path, data, headers, timeout)

    def upload(self, path: str, src: BinaryIO, length: int, *, timeout: float | None = None) -> Any:
        """``PUT API+path`` with the ``length`` bytes of ``src`` as its body, streamed; the JSON answer."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        return self._exchange("PUT", path, src, headers, timeout)

    def _exchange(self, method: str, path: str, data: bytes | BinaryIO | None, headers: dict[str, str],
                  timeout: float | None) -> Any:
        headers["Accept"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, API + path, body=data, headers=headers)
            answer = conn.getresponse()
            raw = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, KvmhubError):
                raise
            raise HostProblem(f"cannot reach the kvmhub server at {self.url}: {exc}",
                              hint="is it running? (`scripts/server.sh start`); or run the command with "
                                   "{opt:local}", code="host.problem") from None
        finally:
            conn.close()
        payload = json.loads(raw) if raw else None
        if answer.status >= 400:
            raise from_dict(payload if isinstance(payload, dict) else {"error": raw.decode(errors="replace")},
                            answer.status)
        return payload
