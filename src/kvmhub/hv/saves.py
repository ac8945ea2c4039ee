"""Saving a domain's memory state to disk and starting it again from there, every call bounded and translated."""

from __future__ import annotations

import libvirt

from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.domains import Domain

SAVE_TIMEOUT = 900.0


def _state_flags(*, running: bool, paused: bool) -> int:
    flags = 0
    if running:
        flags |= libvirt.VIR_DOMAIN_SAVE_RUNNING
    if paused:
        flags |= libvirt.VIR_DOMAIN_SAVE_PAUSED
    return flags


def managed_save(dom: Domain) -> None:
    """libvirt's managed save: the VM stops, its state kept where `start` finds and resumes it."""
    dom.call("saving the state of", dom.handle.managedSave, 0, timeout=SAVE_TIMEOUT)


def has_managed_save(dom: Domain) -> bool:
    """True when `start` will resume the VM from a managed save instead of booting it."""
    return bool(dom.call("checking the saved state of", dom.handle.hasManagedSaveImage, 0))


def remove_managed_save(dom: Domain) -> None:
    """Drop the managed save (the next start boots the VM afresh)."""
    dom.call("discarding the saved state of", dom.handle.managedSaveRemove, 0)


def start_paused(dom: Domain) -> None:
    """Start the VM (resuming a managed save if it has one) with its vCPUs stopped."""
    dom.call("starting (paused)", dom.handle.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED,
             timeout=SAVE_TIMEOUT)


def save_to_file(dom: Domain, path: str) -> None:
    """Stop the VM, writing its memory state to `path` on the host."""
    dom.call(f"saving to {path} the state of", dom.handle.saveFlags, path, None, 0, timeout=SAVE_TIMEOUT)


def restore_from_file(hv: Hypervisor, path: str, *, running: bool = False, paused: bool = False) -> None:
    """Start the domain a save file holds, in the state it was saved in unless `running`/`paused`."""
    hv.call(hv.conn.restoreFlags, path, None, _state_flags(running=running, paused=paused),
            what=f"restoring the VM saved in {path}", timeout=SAVE_TIMEOUT)


def save_file_xml(hv: Hypervisor, path: str) -> str:
    """The domain definition stored in a save file."""
    return str(hv.call(hv.conn.saveImageGetXMLDesc, path, 0, what=f"reading the save file {path}"))
