"""libvirt's domain state numbers as the names kvmhub shows (a module of its own: `top` needs no more of hv)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import libvirt

if TYPE_CHECKING:  # a type only: loading the VM models costs a command that does not use them
    from kvmhub.models.vm import VMState

_STATE_NAMES: dict[int, VMState] = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "running",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}


def state_name(code: int) -> VMState:
    return _STATE_NAMES.get(code, "unknown")
