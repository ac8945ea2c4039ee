"""`kvmhub ls` through a server's unix socket, answered before the full CLI loads.

The full CLI costs ~0.3 s of imports (Typer, Rich, pydantic) and its HTTP client ~15 ms more (http.client parses
headers with the email package); a listing through the local server needs none of it. Only the plain forms
``[--remote unix:PATH] ls [--json]`` are answered here, and only a plain ``200`` JSON answer; anything else
(other commands and options, https remotes, remotes by name, errors, unusual answers) is left to the full CLI,
which says it with its usual message and exit code. A listing has no effects, so asking again costs only time.
"""

from __future__ import annotations

import _json  # the C scanner alone: the json package loads re and enum (~6 ms) for its pure-Python parts
import _socket  # socket.py wraps it in enums (~2 ms)
import os
import sys

from kvmhub.client.local import DEFAULT_SOCKET

TYPE_CHECKING = False  # not typing's: nothing is loaded here that the listing does not use
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

API_VMS = "/api/v1/vms"
TIMEOUT_S = 30.0
MAX_ANSWER = 64 * 1024 * 1024


def run(argv: Sequence[str]) -> int | None:
    """The exit code when the command was answered here; None when the full CLI must run it."""
    args = list(argv)
    remote = None
    if len(args) >= 2 and args[0] == "--remote":
        remote, args = args[1], args[2:]
    elif args and args[0].startswith("--remote="):
        remote, args = args[0].split("=", 1)[1], args[1:]
    if args not in (["ls"], ["ls", "--json"]):
        return None
    path = _socket_path(remote or os.environ.get("KVMHUB_REMOTE") or None)
    if path is None:
        return None
    found = _get_vms(path)
    if found is None:
        return None
    if args[-1] == "--json":
        import json

        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return 0
    from kvmhub.cli.table import table
    from kvmhub.cli.vm_rows import ls_table

    table(*ls_table(found))
    return 0


def _socket_path(spec: str | None) -> str | None:
    """The server socket the full CLI would use (see :func:`kvmhub.cli.state.remote`), when it is a unix socket
    answered here; None for library mode and for what only the full CLI handles."""
    if spec is not None:
        return (spec.removeprefix("unix:") or DEFAULT_SOCKET) if spec.startswith("unix:") else None
    if os.environ.get("KVMHUB_URI") or not os.path.exists(DEFAULT_SOCKET):
        return None
    from kvmhub.services import orphans

    if orphans.interrupted():
        return None  # the full CLI recovers interrupted operations first
    return DEFAULT_SOCKET


def _get_vms(path: str) -> list[dict[str, Any]] | None:
    """``GET /api/v1/vms`` over the unix socket: the VMs, or None for anything but a whole 200 JSON answer."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(path)
            sock.sendall(f"GET {API_VMS} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                         "Connection: close\r\n\r\n".encode())
            raw = bytearray()
            while chunk := sock.recv(1 << 16):
                raw += chunk
                if len(raw) > MAX_ANSWER:
                    return None
        finally:
            sock.close()
    except OSError:
        return None
    head, sep, body = bytes(raw).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not sep or lines[0].split(" ")[1:2] != ["200"]:
        return None
    headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
    length = headers.get("content-length", "").strip()
    if headers.get("content-type", "").strip() != "application/json" or not length.isdigit() \
            or int(length) != len(body):
        return None  # chunked, cut short or not JSON: the full CLI's client reads it
    found = parse_json(body)
    return found if isinstance(found, list) else None


class _Strict:
    """What the C scanner reads from the decoder that makes it (json.JSONDecoder's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


def parse_json(body: bytes) -> object:
    """``body`` decoded as one JSON document; None when it is not exactly that (the full CLI then reads it)."""
    try:
        text = body.decode()
        value, end = _json.make_scanner(_Strict())(text, 0)  # type: ignore[arg-type]  # its stub asks a scanner
    except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return value if end == len(text) else None
