"""Options every command shares (set by the top-level callback)."""

from __future__ import annotations

from kvmhub.hv import Hypervisor

URI: str | None = None
TIMEOUT: float = 30.0


def hv() -> Hypervisor:
    return Hypervisor(URI, timeout=TIMEOUT)
