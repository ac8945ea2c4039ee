"""A VM's serial console through the server: its WebSocket (``/vms/NAME/console``) pumped to and from the terminal.

Guest output arrives as binary messages and goes to standard output; keystrokes go out as binary messages until
Ctrl-] (the local console's escape key too) or until the server closes the console (the VM stopped).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from kvmhub.tools import terminal

ESCAPE = terminal.ESCAPE  # the local console's escape key too


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
