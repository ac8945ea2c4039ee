"""Reverting to an internal snapshot and removing one: libvirt does both natively, in a few calls and with no
model loaded, so :mod:`kvmhub.services.snapshots.snapshots` and `kvmhub snapshot revert|rm`'s fast path share
them. Each takes the snapshot as :func:`find` found it and returns None, having changed nothing, when it is an
external one (kvmhub's own work, which the caller goes on with)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from kvmhub.errors import Conflict
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import snapshots as hv_snap
from kvmhub.services.vm.lookup import get as get_vm
from kvmhub.validate import check_name


class Found:
    """A VM's snapshot; its kind, libvirt XML and children are read when first asked (a revert needs only the
    kind)."""

    # a plain class, not a dataclass, and no XML parsed to tell the kind: the fast path loads neither dataclasses
    # nor lxml (~15 ms of a `kvmhub snapshot rm`)
    def __init__(self, dom: hv_domains.Domain, target: hv_snap.Snapshot) -> None:
        self.dom = dom
        self.target = target

    @cached_property
    def xml(self) -> str:
        return self.target.xml()

    @cached_property
    def internal(self) -> bool:
        return not self.target.is_external()

    @cached_property
    def children(self) -> list[str]:
        return self.target.children()


def find(hv: Hypervisor, vm: str, snap: str) -> Found:
    """VM ``vm``'s snapshot ``snap`` (raises NotFound for an unknown VM or snapshot)."""
    dom = get_vm(hv, vm)
    return Found(dom, hv_snap.lookup(dom, check_name(snap, "snapshot")))


def _quiet(_phase: str) -> None:
    pass


def revert(found: Found, *, running: bool = False, paused: bool = False,
           phase: Callable[[str], None] = _quiet) -> str | None:
    """Bring the VM back to ``found``; the VM's state after, or None for an external snapshot. ``phase`` is told
    the phase (a Reporter's, or a plain line: its events would load their models)."""
    if not found.internal:
        return None
    phase("reverting (internal snapshot)")
    found.target.revert(running=running, paused=paused)
    return found.dom.state()


def remove(vm: str, snap: str, found: Found, *, keep_children: bool = False) -> list[str] | None:
    """Delete ``found`` alone (``keep_children``: its children hang from its parent after); the names removed,
    or None for an external snapshot. Raises Conflict when it has children and ``keep_children`` is not given."""
    _refuse_children(vm, snap, found.children, keep_children)
    if not found.internal:
        return None
    found.target.delete()
    return [found.target.name]


def _refuse_children(vm: str, snap: str, children: list[str], keep_children: bool) -> None:
    """Conflict when snapshot ``snap`` has children and neither removing them nor keeping them was asked."""
    if children and not keep_children:
        raise Conflict(
            f"snapshot {snap} of {vm} has children: {', '.join(sorted(children))}",
            cause="removing it alone would change what its children hang from",
            hint=f"{{cmd:snapshot rm {vm} {snap} --children}} removes them too; "
                 "`{opt:keep_children}` keeps them (attached to its parent)",
        )
