"""Domain capabilities: what this host's libvirt and QEMU can give a VM of a given type."""

from __future__ import annotations

from kvmhub.errors import HostProblem
from kvmhub.hv.connection import Hypervisor


def domain_capabilities(hv: Hypervisor, virttype: str, machine: str | None = None) -> str | None:
    """``virsh domcapabilities --virttype`` for the host's default emulator and ``machine`` (default: the
    emulator's); None when the driver cannot tell (libvirt's test driver)."""
    try:
        return str(hv.call(hv.conn.getDomainCapabilities, None, None, machine, virttype, 0,
                           what="reading the domain capabilities", retry=True))
    except HostProblem as exc:
        if exc.code == "hv.unsupported":
            return None
        raise
