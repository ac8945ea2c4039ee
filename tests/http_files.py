"""A tiny HTTP file server on loopback for download tests: files from a dict, with broken answers on request."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class Reply:
    """What the server answers for one path."""

    body: bytes = b""
    status: int = 200
    claimed_length: int | None = None  # a Content-Length that lies (truncated download)
    location: str | None = None  # a redirect target
    trickle: float = 0.0  # seconds to sleep between 64 KiB pieces


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, Reply]] = {}

    def do_GET(self) -> None:
        reply = self.files.get(self.path)
        if reply is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(reply.status)
        if reply.location:
            self.send_header("Location", reply.location)
        length = reply.claimed_length if reply.claimed_length is not None else len(reply.body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            for pos in range(0, len(reply.body), 65536):
                self.wfile.write(reply.body[pos:pos + 65536])
                if reply.trickle:
                    time.sleep(reply.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(files: dict[str, Reply]) -> Iterator[str]:
    """Serve `files` on 127.0.0.1 (an ephemeral port) while inside; yields the base URL."""
    handler = type("Handler", (_Handler,), {"files": files})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
