"""``kvmhub metrics`` through a server: an HTTP endpoint here answering a scrape with the server's /metrics."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kvmhub.client.transport import API, Transport
from kvmhub.errors import InvalidInput


def relay(transport: Transport, host: str, port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``GET /metrics`` on ``host:port`` in a daemon thread, each scrape read from the server; returns
    (server, thread). Stop: server.shutdown()."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            try:
                status, kind, body = _scrape(transport)
            except (OSError, http.client.HTTPException) as exc:
                status, kind, body = 502, "text/plain", f"the kvmhub server did not answer: {exc}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is no news

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="pick a free port: {opt:listen} 127.0.0.1:PORT") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-relay", daemon=True)
    thread.start()
    return server, thread


def _scrape(transport: Transport) -> tuple[int, str, bytes]:
    conn = transport.connection()
    try:
        headers = {"Authorization": f"Bearer {transport.token}"} if transport.token else {}
        conn.request("GET", f"{API}/metrics", headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type") or "text/plain", answer.read()
    finally:
        conn.close()
