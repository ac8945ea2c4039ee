"""Options every command shares (set by the top-level callback), and where commands send their work.

A command runs its services here (library mode) or asks a kvmhub server (client mode): with ``--remote NAME|URL``
or ``$KVMHUB_REMOTE``; else through the local server's socket when one answers there and no libvirt URI was
named (``--connect`` / ``$KVMHUB_URI`` pin library mode to that URI); ``--local`` forces library mode.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kvmhub.hv import Hypervisor

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport

URI: str | None = None
TIMEOUT: float = 30.0
REMOTE: str | None = None
LOCAL: bool = False
SERVER_SOCKET = "/run/kvmhub/kvmhub.sock"
_chosen: list[Transport | None] = []


def hv() -> Hypervisor:
    return Hypervisor(URI, timeout=TIMEOUT)


def remote() -> Transport | None:
    """The server this command talks to, or None for library mode (decided once per process)."""
    if not _chosen:
        _chosen.append(_choose())
    return _chosen[0]


def _choose() -> Transport | None:
    from kvmhub.client.transport import Transport

    if LOCAL:
        return None
    if spec := REMOTE or os.environ.get("KVMHUB_REMOTE"):
        from kvmhub.client.remotes import resolve

        return resolve(spec).transport()
    if URI is None and not os.environ.get("KVMHUB_URI") and _answers(SERVER_SOCKET):
        return Transport(f"unix:{SERVER_SOCKET}")
    return None


def _answers(path: str) -> bool:
    from kvmhub.tools import unixsock

    return os.path.exists(path) and os.access(path, os.R_OK | os.W_OK) and unixsock.answers(path, 1.0)


def reset() -> None:
    """Forget the choice (tests run several commands in one process)."""
    _chosen.clear()
