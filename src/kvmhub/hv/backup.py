"""Backup jobs and checkpoints through libvirt, every call bounded and translated."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import libvirt

from kvmhub.errors import KvmhubError, NotFound, OperationFailed, OperationTimeout
from kvmhub.hv.domains import Domain

BACKUP_TIMEOUT = 3600.0


def begin(dom: Domain, backup_xml: str, checkpoint_xml: str) -> None:
    """Start a push-mode backup job and the checkpoint it makes (atomically: both or neither)."""
    try:
        dom.call("starting a backup of", dom.handle.backupBegin, backup_xml, checkpoint_xml, 0, timeout=120.0)
    except KvmhubError as exc:
        # libvirt creates the target files here: a full backup directory fails now, not in the job; say so
        # (the generic translation blames the file system of the VM's disks)
        if "no space" in (exc.original or exc.message).lower():
            raise _failed(dom, exc.original or exc.message) from None
        raise


def _failed(dom: Domain, message: str) -> OperationFailed:
    full = "no space" in message.lower()
    return OperationFailed(
        f"the backup of {dom.name} failed",
        cause="the backup target ran out of space" if full else "QEMU could not copy a disk",
        hint="free space where the backup goes and try again" if full else "see libvirtd's log",
        original=message,
    )


def _stats(dom: Domain, flags: int = 0) -> dict[str, Any]:
    return dict(dom.call("reading the job of", dom.handle.jobStats, flags) or {})


def wait(
    dom: Domain, *, timeout: float = BACKUP_TIMEOUT, progress: Callable[[int, int], None] | None = None
) -> None:
    """Wait for the VM's backup job to end; raise OperationFailed if it failed, OperationTimeout (after
    aborting it) if it runs longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        stats = _stats(dom)
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            break
        if progress:
            done = int(stats.get("disk_processed", stats.get("data_processed", 0)))
            total = int(stats.get("disk_total", stats.get("data_total", 0)))
            progress(done, total)
        if time.monotonic() > deadline:
            abort(dom)
            raise OperationTimeout(f"the backup of {dom.name} did not finish in {timeout:.0f} s",
                                   hint="the backup was cancelled; its files are removed")
        time.sleep(0.3)
    final = _stats(dom, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if final.get("type") == libvirt.VIR_DOMAIN_JOB_FAILED:
        raise _failed(dom, str(final.get("errmsg") or "QEMU ended the backup job with an error"))


def abort(dom: Domain) -> None:
    """Cancel the VM's running job (best effort: the job may have just ended)."""
    try:
        dom.call("cancelling the backup of", dom.handle.abortJob)
    except KvmhubError:
        pass


class Checkpoint:
    """One libvirt checkpoint of a domain."""

    def __init__(self, dom: Domain, cp: Any) -> None:
        self.dom = dom
        self._cp = cp
        self.name: str = cp.getName()

    def xml(self) -> str:
        return str(self.dom.call(f"reading checkpoint {self.name} of", self._cp.getXMLDesc, 0))

    def delete(self, *, metadata_only: bool = False) -> None:
        """Remove the checkpoint (its bitmap merges into its parent's, so later incrementals stay right)."""
        flags = libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
        self.dom.call(f"deleting checkpoint {self.name} of", self._cp.delete, flags, timeout=120.0)


def checkpoints(dom: Domain) -> list[Checkpoint]:
    """Every checkpoint of the domain."""
    found = dom.call("listing checkpoints of", dom.handle.listAllCheckpoints, 0)
    return [Checkpoint(dom, cp) for cp in found or []]


def checkpoint(dom: Domain, name: str) -> Checkpoint:
    """The checkpoint called `name` (raises NotFound naming the VM)."""
    for cp in checkpoints(dom):
        if cp.name == name:
            return cp
    raise NotFound(f"VM {dom.name} has no checkpoint {name!r}")
