"""The keyboard side of an interactive console: the terminal in raw mode, keys sent until Ctrl-] or until the
other side ends, the terminal put back. The local console (a libvirt stream) and the console through the
server (a WebSocket) both use it."""

from __future__ import annotations

import os
import select
import termios
import threading
import tty
from collections.abc import Callable
from typing import BinaryIO

ESCAPE = 0x1D  # Ctrl-]


def send_keys(name: str, in_fd: int, out: BinaryIO, send: Callable[[bytes], None], stop: threading.Event) -> None:
    """Read keys from ``in_fd`` (raw mode when it is a terminal, the banner on ``out``) and ``send`` them until
    Ctrl-] (what came before it is sent), end of input, or ``stop`` set by the other side; ``stop`` is set and
    the terminal put back on the way out."""
    saved = termios.tcgetattr(in_fd) if os.isatty(in_fd) else None
    if saved is not None:
        tty.setraw(in_fd)
        out.write(f"Connected to {name} (Ctrl-] to leave)\r\n".encode())
        out.flush()
    try:
        while not stop.is_set():
            ready, _, _ = select.select([in_fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(in_fd, 1024)
            if not data:
                break
            if ESCAPE in data:
                data = data[: data.index(ESCAPE)]
                if data:
                    send(data)
                break
            send(data)
    finally:
        stop.set()
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
