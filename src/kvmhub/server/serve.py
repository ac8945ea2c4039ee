"""Running the server: uvicorn on the unix socket (root and group ``kvmhub``), and on TCP with TLS if asked."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import grp
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import uvicorn

from kvmhub.errors import HostProblem, InvalidInput
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from kvmhub.tools import unixsock

log = logging.getLogger(__name__)
GROUP = "kvmhub"


def unix_socket(path: Path) -> socket.socket:
    """A listening socket at ``path``, mode 0660, group ``kvmhub`` when that group exists (0600 otherwise).

    A stale socket file is replaced; anything else at the path, or a live server on it, is refused.
    """
    try:
        return _listening(path)
    except OSError as exc:
        raise HostProblem(f"cannot listen on {path}: {exc.strerror or exc}",
                          hint="give a {opt:socket} path in a directory this user may write") from None


def _listening(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise HostProblem(f"{path} exists and is not a socket", hint=f"move it away: mv {path} {path}.old")
        if unixsock.answers(str(path)):
            raise HostProblem(f"a kvmhub server already listens on {path}", code="host.problem",
                              hint="stop it first, or give this one another --socket")
        path.unlink()  # left by a server that is gone
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # no moment where the socket is open to others
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    with contextlib.suppress(KeyError):
        os.chown(path, -1, grp.getgrnam(GROUP).gr_gid)
        os.chmod(path, 0o660)
    sock.listen(128)
    return sock


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"{{opt:listen}} {listen!r} is not ADDR:PORT", hint="e.g. 127.0.0.1:8443 or [::]:8443")
    return host.strip("[]") or "127.0.0.1", int(port)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _fewer_malloc_arenas() -> None:
    """At most two glibc malloc arenas: each worker thread would otherwise get one of its own, which the server's
    memory keeps long after the thread's work (a few MiB; the same as MALLOC_ARENA_MAX=2)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def serve(settings: ServerSettings, say: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM."""
    address = parse_listen(settings.listen) if settings.listen is not None else None  # refused before any socket
    _fewer_malloc_arenas()
    app = create_app(settings)
    servers: list[tuple[uvicorn.Server, list[socket.socket] | None]] = []
    lifespan: Literal["on", "off"] = "on"
    if settings.socket is not None:
        sock = unix_socket(settings.socket)
        config = uvicorn.Config(Marked(app, "unix"), lifespan=lifespan, log_level="warning", access_log=False)
        servers.append((_Server(config), [sock]))
        lifespan = "off"  # one app, one start-up: the first listener runs it
        say(f"kvmhub server on unix socket {settings.socket}")
    if settings.listen is not None and address is not None:
        host, port = address
        cert, key = settings.tls_cert, settings.tls_key
        if not settings.insecure_http:
            # loaded only here: the certificate library costs a server on the unix socket alone ~8 MiB of memory
            from kvmhub.server import tls

            if (cert is None) != (key is None):
                raise InvalidInput("give both {opt:tls_cert} and {opt:tls_key}, or neither (a self-signed pair)")
            if cert is None:
                cert, key, made = tls.self_signed()
                say(("made" if made else "using") + f" self-signed certificate {cert}")
            assert cert is not None
            say(f"TLS fingerprint (pin it: kvmhub remote add NAME https://{settings.listen} --token T): "
                f"{tls.fingerprint(cert)}")
        config = uvicorn.Config(Marked(app, "tcp"), host=host, port=port, lifespan=lifespan, log_level="warning",
                                access_log=False, ssl_certfile=None if settings.insecure_http else cert,
                                ssl_keyfile=None if settings.insecure_http else key)
        servers.append((_Server(config), None))
        scheme = "http" if settings.insecure_http else "https"
        say(f"kvmhub server on {scheme}://{settings.listen}" + (" (no TLS: anyone on the path can read it)"
                                                                 if settings.insecure_http else ""))
    if not servers:
        raise InvalidInput("nothing to listen on", hint="give {opt:socket} or {opt:listen}")
    try:
        asyncio.run(_run_all(servers))
    finally:
        if settings.socket is not None:
            with contextlib.suppress(FileNotFoundError):
                settings.socket.unlink()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`_run_all` (one handler stops every listener)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _run_all(servers: list[tuple[uvicorn.Server, list[socket.socket] | None]]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop)
    first, first_socks = servers[0]
    tasks = [asyncio.create_task(first.serve(sockets=first_socks))]
    while not first.started and not first.should_exit and not tasks[0].done():
        await asyncio.sleep(0.05)  # the app's start-up (recovery) runs before the other listeners open
    for server, socks in servers[1:]:
        tasks.append(asyncio.create_task(server.serve(sockets=socks)))
    done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
