"""Whether a kvmhub server answers on a unix socket (the CLI's choice between client and library mode)."""

from __future__ import annotations

import os

from kvmhub.tools import unixsock


def server_answers(path: str, timeout: float = 1.0) -> bool:
    """True when ``path`` is a socket this user may use and a connection to it is accepted within ``timeout``."""
    return os.path.exists(path) and os.access(path, os.R_OK | os.W_OK) and unixsock.answers(path, timeout)
