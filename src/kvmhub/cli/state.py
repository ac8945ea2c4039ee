"""Options every command shares (set by the top-level callback), and where commands send their work.

A command runs its services here (library mode) or asks a kvmhub server (client mode): with ``--remote NAME|URL``
or ``$KVMHUB_REMOTE``; else through the local server's socket when one answers there and no libvirt URI was
named (``--connect`` / ``$KVMHUB_URI`` pin library mode to that URI); ``--local`` forces library mode.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kvmhub.client.local import DEFAULT_SOCKET

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.services.connect import Hypervisor

URI: str | None = None
TIMEOUT: float = 30.0
REMOTE: str | None = None
LOCAL: bool = False
SERVER_SOCKET = DEFAULT_SOCKET
_chosen: list[Transport | None] = []


def hv() -> Hypervisor:
    """The hypervisor of library mode (``--connect`` or the default URI)."""
    from kvmhub.services.connect import open_hypervisor

    return open_hypervisor(URI, TIMEOUT)


def remote() -> Transport | None:
    """The server this command talks to, or None for library mode (decided once per process)."""
    if not _chosen:
        _chosen.append(_choose())
    return _chosen[0]


def _choose() -> Transport | None:
    if LOCAL:
        return None
    if spec := REMOTE or os.environ.get("KVMHUB_REMOTE"):
        from kvmhub.client.remotes import resolve

        return resolve(spec).transport()
    if URI is None and not os.environ.get("KVMHUB_URI") and _answers(SERVER_SOCKET):
        from kvmhub.client.transport import Transport  # library mode never loads the HTTP client (~14 ms)

        return Transport(f"unix:{SERVER_SOCKET}")
    return None


def _answers(path: str) -> bool:
    from kvmhub.client.probe import server_answers

    return server_answers(path)


def here_only(command: str) -> None:
    """For commands that change the machine they run on: through the server's socket on this machine they run
    here (with a note saying so); through a remote server they are refused."""
    from kvmhub.cli import output
    from kvmhub.errors import InvalidInput

    if (server := remote()) is None:
        return
    if server.url.startswith("unix:"):
        output.say(f"note: `kvmhub {command}` changes this machine itself: it runs here, not through the server")
        return
    raise InvalidInput(f"`kvmhub {command}` changes the machine it runs on; the server at {server.url} does not "
                       "offer it", hint=f"run it on that host, e.g. `ssh HOST kvmhub {command} ...`")


def reset() -> None:
    """Forget the choice (tests run several commands in one process)."""
    _chosen.clear()
