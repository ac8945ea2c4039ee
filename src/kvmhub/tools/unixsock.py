"""Whether something listens on a unix socket (a daemon, the kvmhub server)."""

from __future__ import annotations

import socket


def answers(path: str, timeout: float = 2.0) -> bool:
    """True when a connection to the unix socket at ``path`` is accepted within ``timeout`` seconds."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True
