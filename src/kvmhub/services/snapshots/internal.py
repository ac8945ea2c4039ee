"""Reverting to an internal snapshot and removing one: libvirt does both natively, in a few calls and with no
model loaded, so :mod:`kvmhub.services.snapshots.snapshots` and `kvmhub snapshot revert|rm`'s fast path share
them. Each returns None, having changed nothing, when the snapshot is an external one (kvmhub's own work)."""

from __future__ import annotations

from collections.abc import Callable

from kvmhub.errors import Conflict
from kvmhub.hv import Hypervisor
from kvmhub.hv import snapshots as hv_snap
from kvmhub.services.vm.lookup import get as get_vm
from kvmhub.validate import check_name
from kvmhub.xml.snapshot import snapshot_kind


def _quiet(_phase: str) -> None:
    pass


def revert(hv: Hypervisor, vm: str, snap: str, *, running: bool = False, paused: bool = False,
           phase: Callable[[str], None] = _quiet) -> str | None:
    """Bring ``vm`` back to its internal snapshot ``snap``; the VM's state after, or None for an external one.
    ``phase`` is told the phase (a Reporter's, or a plain line: its events would load their models). Raises
    NotFound for an unknown VM or snapshot."""
    dom = get_vm(hv, vm)
    target = hv_snap.lookup(dom, check_name(snap, "snapshot"))
    if snapshot_kind(target.xml()) != "internal":
        return None
    phase("reverting (internal snapshot)")
    target.revert(running=running, paused=paused)
    return dom.state()


def remove(hv: Hypervisor, vm: str, snap: str, *, keep_children: bool = False) -> list[str] | None:
    """Delete ``vm``'s internal snapshot ``snap`` alone (``keep_children``: its children hang from its parent
    after); the names removed, or None for an external one. Raises Conflict when it has children and
    ``keep_children`` is not given."""
    dom = get_vm(hv, vm)
    target = hv_snap.lookup(dom, check_name(snap, "snapshot"))
    kind = snapshot_kind(target.xml())
    refuse_children(vm, snap, target.children(), keep_children)
    if kind != "internal":
        return None
    target.delete()
    return [target.name]


def refuse_children(vm: str, snap: str, children: list[str], keep_children: bool) -> None:
    """Conflict when snapshot ``snap`` has children and neither removing them nor keeping them was asked."""
    if children and not keep_children:
        raise Conflict(
            f"snapshot {snap} of {vm} has children: {', '.join(sorted(children))}",
            cause="removing it alone would change what its children hang from",
            hint=f"{{cmd:snapshot rm {vm} {snap} --children}} removes them too; "
                 "`{opt:keep_children}` keeps them (attached to its parent)",
        )
