"""Domain snapshots and the block jobs kvmhub uses around them, every call bounded and translated."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import libvirt

from kvmhub.errors import NotFound, OperationFailed, OperationTimeout
from kvmhub.hv.domains import Domain

SNAPSHOT_TIMEOUT = 600.0
JOB_TIMEOUT = 3600.0


class Snapshot:
    """One libvirt snapshot of a domain."""

    def __init__(self, dom: Domain, snap: Any) -> None:
        self.dom = dom
        self._snap = snap
        self.name: str = snap.getName()

    def _call(self, what: str, fn: Any, *args: Any, timeout: float | None = None, retry: bool = False) -> Any:
        """``retry``: a read (see :meth:`Hypervisor.call`)."""
        return self.dom.call(f"{what} snapshot {self.name} of", fn, *args, timeout=timeout, retry=retry)

    def xml(self) -> str:
        return str(self._call("reading", self._snap.getXMLDesc, 0, retry=True))

    def is_external(self) -> bool:
        """Whether its memory or a disk is saved outside the disk images (libvirt's own test, the one
        :func:`kvmhub.xml.snapshot.snapshot_kind` makes from the XML), in one call and without parsing XML."""
        external = self.dom.call("listing external snapshots of", self.dom.handle.listAllSnapshots,
                                 libvirt.VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL, retry=True)
        return any(s.getName() == self.name for s in external)

    def is_current(self) -> bool:
        return bool(self._call("reading", self._snap.isCurrent, 0, retry=True))

    def children(self) -> list[str]:
        return [str(n) for n in self._call("listing children of", self._snap.listChildrenNames, 0, retry=True)]

    def revert(self, *, running: bool = False, paused: bool = False) -> None:
        """Native revert (internal snapshots); `running`/`paused` pick the state the VM comes back in."""
        flags = 0
        if running:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
        if paused:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        self._call("reverting to", self.dom.handle.revertToSnapshot, self._snap, flags, timeout=SNAPSHOT_TIMEOUT)

    def delete(self, *, children: bool = False, metadata_only: bool = False) -> None:
        flags = 0
        if children:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
        if metadata_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
        self._call("deleting", self._snap.delete, flags, timeout=SNAPSHOT_TIMEOUT)


def list_all(dom: Domain) -> list[Snapshot]:
    """Every snapshot of the domain."""
    snaps = dom.call("listing snapshots of", dom.handle.listAllSnapshots, 0, retry=True)
    return [Snapshot(dom, s) for s in snaps]


def lookup(dom: Domain, name: str) -> Snapshot:
    """The snapshot called `name` (raises NotFound naming the VM)."""
    try:
        snap = dom.call(f"looking up snapshot {name!r} of", dom.handle.snapshotLookupByName, name, 0, retry=True)
    except NotFound:
        raise NotFound(
            f"VM {dom.name} has no snapshot {name!r}",
            hint=f"list them: {{cmd:snapshot ls {dom.name}}}", code="snapshot.not_found",
        ) from None
    return Snapshot(dom, snap)


def current_name(dom: Domain) -> str | None:
    if not dom.call("reading the current snapshot of", dom.handle.hasCurrentSnapshot, 0):
        return None
    snap = dom.call("reading the current snapshot of", dom.handle.snapshotCurrent, 0)
    return str(snap.getName())


def create(
    dom: Domain,
    xml: str,
    *,
    disk_only: bool = False,
    quiesce: bool = False,
    redefine: bool = False,
    current: bool = False,
) -> Snapshot:
    """Take (or, with `redefine`, re-register) a snapshot described by `xml`.

    Creation is atomic: libvirt either makes every overlay and the metadata or none of them.
    """
    flags = 0 if redefine else libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    if disk_only:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    if quiesce:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    if redefine:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
    if current:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
    what = "redefining a snapshot of" if redefine else "taking a snapshot of"
    snap = dom.call(what, dom.handle.snapshotCreateXML, xml, flags, timeout=SNAPSHOT_TIMEOUT)
    return Snapshot(dom, snap)


def set_metadata(dom: Domain, xml: str, key: str, uri: str) -> None:
    """Replace the domain's metadata element in namespace `uri` (live too when the VM runs)."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.is_active():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    dom.call("updating metadata of", dom.handle.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, key, uri,
             flags)


def start_paused(dom: Domain) -> None:
    """Start the VM with its vCPUs stopped (for block jobs on a VM that is shut off)."""
    dom.call("starting (paused)", dom.handle.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED,
             timeout=max(dom.hv.timeout, 120.0))


def restore_memory(dom: Domain, path: str, domain_xml: str, *, paused: bool) -> None:
    """Start the VM from a memory state file, with `domain_xml` (e.g. new disk files) instead of the saved one."""
    flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING
    dom.hv.call(dom.hv.conn.restoreFlags, path, domain_xml, flags,
                what=f"restoring the memory state of {dom.name}", timeout=SNAPSHOT_TIMEOUT)


def _job(dom: Domain, disk: str) -> dict[str, int]:
    info = dom.call("reading the block job of", dom.handle.blockJobInfo, disk, 0)
    return dict(info or {})


def block_commit(
    dom: Domain,
    disk: str,
    *,
    top: str,
    base: str,
    active: bool,
    timeout: float = JOB_TIMEOUT,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Merge the image `top` into `base` (paths in `disk`'s chain) and wait for the job to end.

    With `active` (top is the image the VM writes to) the VM is pivoted onto `base` when the copy has
    converged. The domain must be running (or started paused). Raises OperationFailed if the job fails.
    """
    flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0
    dom.call(f"merging {top} into {base} for disk {disk} of", dom.handle.blockCommit, disk, base, top, 0, flags)
    _wait_job(dom, disk, active=active, timeout=timeout, progress=progress, what=f"merging {top} into {base}")


def _wait_job(
    dom: Domain,
    disk: str,
    *,
    active: bool,
    timeout: float,
    progress: Callable[[int, int], None] | None,
    what: str,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = _job(dom, disk)
        if not info:
            if active:
                raise OperationFailed(
                    f"{what} for disk {disk} of {dom.name} ended before it could be completed",
                    cause="QEMU aborted the block job (an I/O error or no space on the host)",
                    hint="see libvirtd's log; the VM still uses its previous disk image",
                )
            return
        cur, end = int(info.get("cur", 0)), int(info.get("end", 0))
        if progress:
            progress(cur, end)
        if active and end > 0 and cur == end and info.get("ready", 1):
            dom.call(f"switching disk {disk} of", dom.handle.blockJobAbort, disk,
                     libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT, timeout=120.0)
            _wait_gone(dom, disk, deadline, what)
            return
        if time.monotonic() > deadline:
            dom.call("cancelling the block job of", dom.handle.blockJobAbort, disk, 0)
            raise OperationTimeout(f"{what} for disk {disk} of {dom.name} did not finish in {timeout:.0f} s")
        time.sleep(0.2)


def _wait_gone(dom: Domain, disk: str, deadline: float, what: str) -> None:
    while _job(dom, disk):
        if time.monotonic() > deadline:
            raise OperationTimeout(f"{what} for disk {disk} of {dom.name}: the pivot did not finish")
        time.sleep(0.1)
