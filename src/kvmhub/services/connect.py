"""What library mode opens below the services: the hypervisor, and the facts about where it runs that commands
check before acting on the machine they run on (a bridge, KSM, the image builder)."""

from __future__ import annotations

from kvmhub.hv import Hypervisor, host_root, is_local_uri, resolve_uri
from kvmhub.tools.urls import is_url

__all__ = ["Hypervisor", "host_root", "is_local_uri", "is_url", "open_hypervisor", "resolve_uri", "runs_here"]


def open_hypervisor(uri: str | None, timeout: float) -> Hypervisor:
    """A connection to libvirt at ``uri`` (None: the default URI), each call bounded by ``timeout`` seconds."""
    return Hypervisor(uri, timeout=timeout)


def runs_here(uri: str | None) -> tuple[bool, str]:
    """Whether ``uri`` (None: the default) is a libvirtd on this machine, and the URI it resolves to."""
    resolved = resolve_uri(uri)
    return is_local_uri(resolved), resolved
