"""Snapshots: create, list, show, revert, remove — internal ones natively, external ones with block jobs.

Internal snapshots (disk state inside the qcow2, plus memory for a running VM) are libvirt's own. External
snapshots freeze each disk's current file and put a new overlay on top. libvirt 9.0 cannot revert or delete
those, so kvmhub does it itself:

* revert to S: a fresh overlay on the file S froze, the VM definition pointed at it, S re-registered
  (redefined) with that overlay and marked current; the discarded writes' file is deleted, and S's memory
  state (if any) is restored onto the new overlay.
* delete S: S's overlay is merged down into the file S froze (blockcommit; a VM that is shut off is started
  paused for the job), snapshots that froze the overlay are redefined to name the merged file, then the
  overlay and S's metadata go. Data only moves in the block job, which never changes what the VM sees.

Every new file is recorded in the VM's ``owned-volume`` metadata so ``kvmhub rm`` removes it.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import snapshots as hv_snap
from kvmhub.hv import storage as hv_storage
from kvmhub.models.snapshot import SnapshotDisk, SnapshotInfo, SnapshotRequest, SnapshotSpec
from kvmhub.models.vm import DiskSource
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import undo_actions
from kvmhub.services.snapshots import internal
from kvmhub.services.vm.lookup import get as get_vm
from kvmhub.validate import check_name
from kvmhub.xml import snapshot as xml_snap
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.metadata import KVMHUB_NS, KVMHUB_PREFIX, metadata_from_xml, metadata_to_xml
from kvmhub.xml.pool import pool_path_from_xml


def _quiet(_msg: str) -> None:
    pass


def _snapshot_name(name: str | None) -> str:
    if name is None:
        return dt.datetime.now(dt.UTC).strftime("snap-%Y%m%d-%H%M%S")
    return check_name(name, "snapshot")


def _infos(dom: hv_domains.Domain) -> dict[str, SnapshotInfo]:
    current = hv_snap.current_name(dom)
    out = {}
    for snap in hv_snap.list_all(dom):
        out[snap.name] = xml_snap.snapshot_from_xml(
            snap.xml(), vm=dom.name, current=snap.name == current, children=snap.children()
        )
    return out


def list_snapshots(hv: Hypervisor, vm: str) -> list[SnapshotInfo]:
    """Every snapshot of `vm`, parents before children, oldest first among siblings."""
    infos = _infos(get_vm(hv, vm))
    ordered: list[SnapshotInfo] = []

    def walk(parent: str | None) -> None:
        kids = sorted((i for i in infos.values() if i.parent == parent), key=lambda i: (i.created or "", i.name))
        for info in kids:
            ordered.append(info)
            walk(info.name)

    walk(None)
    return ordered


def show(hv: Hypervisor, vm: str, snap: str) -> SnapshotInfo:
    """One snapshot (raises NotFound)."""
    dom = get_vm(hv, vm)
    found = hv_snap.lookup(dom, check_name(snap, "snapshot"))
    return xml_snap.snapshot_from_xml(
        found.xml(), vm=dom.name, current=found.is_current(), children=found.children()
    )


# -- files ------------------------------------------------------------------------------------------------


def _path(hv: Hypervisor, source: DiskSource) -> str:
    if source.pool and source.volume:
        return hv_storage.lookup_pool(hv, source.pool).volume(source.volume).path
    if not source.path:
        raise InvalidInput("a disk without a source cannot be snapshotted")
    return source.path


def _pool_of(hv: Hypervisor, path: str) -> hv_storage.Pool | None:
    """The pool holding `path` (refreshed, so files libvirt made outside the pool API are seen)."""
    for name in hv_storage.pool_names(hv):
        pool = hv_storage.lookup_pool(hv, name)
        try:
            target = _pool_dir(pool)
        except KvmhubError:
            continue
        if target and os.path.dirname(path) == target.rstrip("/"):
            if pool.is_active():
                pool.refresh()
            return pool
    return None


def _pool_dir(pool: hv_storage.Pool) -> str | None:

    return pool_path_from_xml(pool.xml())


def _unique_file(hv: Hypervisor, directory: str, stem: str, suffix: str, taken: set[str]) -> str:
    pool = _pool_of(hv, os.path.join(directory, "x"))
    existing = set(pool.volume_names()) if pool else set()
    n = 1
    while True:
        name = f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
        path = os.path.join(directory, name)
        if name not in existing and path not in taken:
            return path
        n += 1


def _backing(hv: Hypervisor, path: str) -> str | None:
    vol = hv_storage.volume_by_path(hv, path)
    if vol is None:
        return None
    return xml_volume.volume_from_xml(vol.xml()).backing_path


def _delete_file(hv: Hypervisor, path: str) -> None:
    _pool_of(hv, path)
    vol = hv_storage.volume_by_path(hv, path)
    if vol is not None:
        vol.delete()


def _forget_file(hv: Hypervisor, dom: hv_domains.Domain, path: str) -> None:
    drop = _owned_ref(hv, path)
    _delete_file(hv, path)
    _set_owned(dom, [], [drop] if drop else [])


def _owned_ref(hv: Hypervisor, path: str) -> str | None:
    pool = _pool_of(hv, path)
    return f"{pool.name}/{os.path.basename(path)}" if pool else None


def _set_owned(dom: hv_domains.Domain, add: list[str], drop: list[str]) -> None:
    """Record files kvmhub made (or removed) for the VM in its metadata, so `kvmhub rm` cleans them up."""
    text = dom.metadata()
    if text is None:
        return  # not a kvmhub VM: its owner tracks its files
    meta = metadata_from_xml(text)
    owned = [v for v in meta.owned_volumes if v not in drop]
    owned += [v for v in add if v not in owned]
    if owned == meta.owned_volumes:
        return
    hv_snap.set_metadata(dom, metadata_to_xml(meta.model_copy(update={"owned_volumes": owned})),
                         KVMHUB_PREFIX, KVMHUB_NS)


# -- create -----------------------------------------------------------------------------------------------


def _plan(
    hv: Hypervisor, dom: hv_domains.Domain, name: str, *, running: bool, memory: bool, external: bool,
    description: str | None,
) -> tuple[SnapshotSpec, list[str]]:
    """The snapshot to ask for and the new files it will make."""
    domain_xml = dom.xml()
    disks: list[SnapshotDisk] = []
    new_files: list[str] = []
    for disk in xml_snap.domain_disks(domain_xml):
        if disk.device != "disk" or disk.readonly or disk.source is None:
            disks.append(SnapshotDisk(target=disk.target, snapshot="no"))
            continue
        if not external and disk.format != "qcow2":
            raise Conflict(
                f"disk {disk.target} of {dom.name} is {disk.format}: internal snapshots need qcow2",
                cause="only qcow2 can hold snapshots inside the image",
                hint=f"take an external one: {{cmd:snapshot create {dom.name} {name} --disk-only}}",
            )
        if not external:
            disks.append(SnapshotDisk(target=disk.target, snapshot="internal"))
            continue
        top = _path(hv, disk.source)
        stem = f"{dom.name}-{disk.target}.{name}"
        path = _unique_file(hv, os.path.dirname(top), stem, ".qcow2", set(new_files))
        new_files.append(path)
        disks.append(SnapshotDisk(target=disk.target, snapshot="external", file=path, format="qcow2"))
    if not any(d.snapshot != "no" for d in disks):
        raise Conflict(f"VM {dom.name} has no writable disk to snapshot")
    memory_mode = "no"
    memory_file = None
    if memory:
        memory_mode = "external" if external else "internal"
        if external:
            first = next(d.file for d in disks if d.file)
            assert first is not None
            memory_file = _unique_file(hv, os.path.dirname(first), f"{dom.name}.{name}", ".memory", set(new_files))
            new_files.append(memory_file)
    spec = SnapshotSpec(name=name, description=description, memory=memory_mode,  # type: ignore[arg-type]
                        memory_file=memory_file, disks=disks)
    return spec, new_files


def create(hv: Hypervisor, req: SnapshotRequest, *, report: Reporter = QUIET) -> SnapshotInfo:
    """Take a snapshot of VM ``req.vm`` (named ``req.name``, default snap-DATE-TIME).

    Running VM: internal with memory by default; `disk_only` makes an external disk-only one (`quiesce`
    freezes guest file systems through the agent around it). Shut-off VM: internal, or external with
    `disk_only`. UEFI guests, and VMs that already have external snapshots, get external ones.
    Raises InvalidInput for contradictory options, Conflict for a taken name or a VM in the wrong state.
    """
    vm, memory, disk_only, quiesce, description = req.vm, req.memory, req.disk_only, req.quiesce, req.description
    name = _snapshot_name(req.name)
    if memory and disk_only:
        raise InvalidInput("{opt:memory} and {opt:disk_only} contradict each other", hint="pick one")
    dom = get_vm(hv, vm)
    state = dom.state()
    if state not in ("running", "paused", "shut off"):
        raise Conflict(f"cannot snapshot VM {vm}: it is {state}", hint="wait until it is running or shut off",
                       code="vm.wrong_state")
    live = state != "shut off"
    if memory and not live:
        raise InvalidInput(f"{{opt:memory}} needs a running VM; {vm} is shut off",
                           hint="drop {opt:memory}: a shut-off VM's snapshot is its disks")
    if quiesce and not (live and disk_only):
        raise InvalidInput("{opt:quiesce} needs {opt:disk_only} on a running VM",
                           cause="a memory snapshot is consistent by itself; a shut-off VM has nothing to freeze")
    existing = _infos(dom)
    if name in existing:
        raise Conflict(f"VM {vm} already has a snapshot {name!r}", hint="pick another name", code="name.taken")
    kinds = {i.kind for i in existing.values()}
    external = disk_only or "external" in kinds or xml_snap.uses_pflash(dom.xml(inactive=True))
    if external and "internal" in kinds:
        raise Conflict(
            f"VM {vm} has internal snapshots; kvmhub does not mix them with external ones",
            cause="reverting an internal snapshot would orphan the overlay files of external ones",
            hint=f"take an internal one (drop {{opt:disk_only}}), or remove the others: {{cmd:snapshot ls {vm}}}",
        )
    with_memory = live and not disk_only
    spec, new_files = _plan(hv, dom, name, running=live, memory=with_memory, external=external,
                            description=description)
    report.phase(f"taking {'an external' if external else 'an internal'} snapshot"
        + (" with memory" if with_memory else " of the disks"))
    with Operation(hv, "snapshot.create", f"{vm}/{name}", locks=[LockSpec("vm", vm)], report=report) as op:
        if name in {s.name for s in hv_snap.list_all(dom)}:  # again under the lock
            raise Conflict(f"VM {vm} already has a snapshot {name!r}", hint="pick another name", code="name.taken")
        refs = [r for r in (_owned_ref(hv, f) for f in new_files) if r]
        op.add("forget the snapshot's files", Action("snapshot.forget_files", {"uuid": dom.uuid, "refs": refs}))
        _set_owned(dom, refs, [])
        faults.point("snapshot-owned")
        # libvirtd finishes the snapshot even if this process dies in the call: the undo removes it then
        op.add(f"remove snapshot {name}", Action("snapshot.remove", {"uuid": dom.uuid, "name": name}))
        try:
            hv_snap.create(dom, xml_snap.snapshot_to_xml(spec), disk_only=external and not with_memory,
                           quiesce=quiesce)
        except BaseException:
            _resume_if_left_paused(dom, state, report)
            raise
        faults.point("snapshot-taken")
        for f in new_files:
            _pool_of(hv, f)
        op.success()
    return show(hv, vm, name)


def _resume_if_left_paused(dom: hv_domains.Domain, before: str, report: Reporter) -> None:
    """libvirt pauses the guest while it saves memory; a failure must not leave it paused."""
    try:
        if before == "running" and dom.state() == "paused":
            dom.resume()
            report.warn("the snapshot failed while the VM was paused; the VM has been resumed")
    except KvmhubError as exc:
        report.warn(f"could not resume the VM after the failed snapshot: {exc.message}")


# -- revert -----------------------------------------------------------------------------------------------


def revert(
    hv: Hypervisor, vm: str, snap: str, *, running: bool = False, paused: bool = False, report: Reporter = QUIET
) -> str:
    """Bring `vm` back to snapshot `snap`, discarding its current state; returns the VM's state after.

    `running`/`paused` override the state the snapshot was taken in. Raises NotFound for an unknown snapshot.
    """
    if running and paused:
        raise InvalidInput("{opt:running} and {opt:paused} contradict each other", hint="pick one")
    found = internal.find(hv, vm, snap)
    after = internal.revert(found, running=running, paused=paused, phase=report.phase)
    if after is not None:
        return after
    info = xml_snap.snapshot_from_xml(found.xml, vm=vm)
    _revert_external(hv, found.dom, found.target, info, running=running, paused=paused, report=report)
    return found.dom.state()


def _revert_external(
    hv: Hypervisor, dom: hv_domains.Domain, target: hv_snap.Snapshot, info: SnapshotInfo, *,
    running: bool, paused: bool, report: Reporter,
) -> None:
    old_xml = target.xml()
    frozen = {t: _path(hv, s) for t, s in info.frozen.items()}
    if dom.is_active():
        report.phase("stopping the VM (its current state is discarded)")
        dom.destroy()
    inactive = dom.xml(inactive=True)
    tops = _tops(hv, inactive)
    new: dict[str, str] = {}
    with Operation(hv, "snapshot.revert", f"{dom.name}/{info.name}", locks=[LockSpec("vm", dom.name)],
                   report=report) as undo:
        for disk, base in frozen.items():
            path = _unique_file(hv, os.path.dirname(base), f"{dom.name}-{disk}.{info.name}", ".qcow2",
                                set(new.values()))
            pool = _pool_of(hv, path)
            base_vol = hv_storage.volume_by_path(hv, base)
            if pool is None or base_vol is None:
                raise NotFound(f"the file snapshot {info.name} froze for disk {disk} ({base}) is not in a pool",
                               hint="`virsh pool-refresh` its pool, or define a dir pool for its directory")
            ref = f"{pool.name}/{os.path.basename(path)}"
            undo.add(f"forget {ref}", Action("snapshot.forget_files", {"uuid": dom.uuid, "refs": [ref]}))
            _set_owned(dom, [ref], [])
            undo.add(f"delete {path}", undo_actions.delete_volume(pool.name, os.path.basename(path), path))
            report.phase(f"new overlay for {disk} on {os.path.basename(base)}")
            pool.create_volume(
                xml_volume.volume_xml(os.path.basename(path), base_vol.info().capacity, "qcow2", base, "qcow2"),
                what=f"creating an overlay of {base}",
            )
            new[disk] = path
        definition = dom.xml(inactive=True)  # re-read: it now lists the new overlays as owned
        undo.add("restore the VM definition", undo_actions.redefine_domain(dom.uuid, dom.name, definition))
        hv_domains.define(hv, xml_snap.retarget_domain_disks(definition, new))
        undo.add("re-register the snapshot as it was",
                 Action("snapshot.redefine", {"uuid": dom.uuid, "xml": old_xml}))
        hv_snap.create(dom, xml_snap.redefine_xml(old_xml, overlays=new), redefine=True, current=True)
        undo.success()
    frozen_everywhere = {_path(hv, s) for i in _infos(dom).values() for s in i.frozen.values()}
    for disk, top in tops.items():
        if disk in new and top not in frozen_everywhere and top != new[disk]:
            report.phase(f"discarding {os.path.basename(top)}")
            _forget_file(hv, dom, top)
    if info.memory and info.memory_file:
        report.phase("restoring the memory state")
        inner = xml_snap.snapshot_domain_xml(old_xml)
        hv_snap.restore_memory(dom, info.memory_file, xml_snap.retarget_domain_disks(inner, new),
                               paused=paused or (info.state == "paused" and not running))
    elif paused:
        hv_snap.start_paused(dom)
    elif running:
        dom.start()


def _tops(hv: Hypervisor, domain_xml: str) -> dict[str, str]:
    """Disk target → the file the VM writes to, for every writable disk."""
    return {d.target: _path(hv, d.source) for d in xml_snap.domain_disks(domain_xml)
            if d.source is not None and d.device == "disk" and not d.readonly}


# -- remove -----------------------------------------------------------------------------------------------


def remove(
    hv: Hypervisor, vm: str, snap: str, *, children: bool = False, keep_children: bool = False, report: Reporter = QUIET
) -> list[str]:
    """Delete snapshot `snap` (with `children`, its whole subtree); returns the names removed.

    A snapshot with children is refused unless `children` (remove them too) or `keep_children` (they are
    re-parented onto its parent, and stay revertable) is given.
    """
    if children and keep_children:
        raise InvalidInput("{opt:children} and {opt:keep_children} contradict each other", hint="pick one")
    found = internal.find(hv, vm, snap)
    if not children and (gone := internal.remove(vm, snap, found, keep_children=keep_children)) is not None:
        return gone
    dom, target = found.dom, found.target
    # the others are read only when they matter: each costs two libvirt calls and a parse
    info = xml_snap.snapshot_from_xml(found.xml, vm=vm, children=found.children)
    order: list[str] = []

    def post_order(name: str) -> None:
        for kid in infos[name].children:
            post_order(kid)
        order.append(name)

    if children:
        infos = _infos(dom)
        post_order(target.name)
    else:
        order = [target.name]
    if info.kind == "internal":
        target.delete(children=children)
        return order
    # an external delete merges files: it cannot be taken back, only finished (run `snapshot rm` again);
    # the journal makes sure a VM started paused for the merge is not left running
    with Operation(hv, "snapshot.rm", f"{vm}/{snap}", locks=[LockSpec("vm", vm)], report=report) as op:
        for name in order:
            report.phase(f"removing snapshot {name}")
            _remove_external(hv, dom, name, report, op)
        op.success()
    return order


def _chain(hv: Hypervisor, top: str) -> list[str]:
    out = [top]
    while (nxt := _backing(hv, out[-1])) is not None and nxt not in out:
        out.append(nxt)
    return out


def _remove_external(hv: Hypervisor, dom: hv_domains.Domain, name: str, report: Reporter, op: Operation) -> None:
    infos = _infos(dom)
    info = infos[name]
    tops = _tops(hv, dom.xml())
    chains = {disk: _chain(hv, top) for disk, top in tops.items()}
    known = {p for c in chains.values() for p in c}
    for other in infos.values():
        known |= {_path(hv, s) for s in other.frozen.values()}
        known |= {d.file for d in other.disks if d.file}
    for directory in {os.path.dirname(p) for p in known}:
        _pool_of(hv, os.path.join(directory, "x"))
    existing = {p for p in known if hv_storage.volume_by_path(hv, p) is not None}
    backing = {p: _backing(hv, p) for p in existing}

    def users(path: str) -> list[str]:
        return [p for p, b in backing.items() if b == path]

    merges: list[tuple[str, str, str, bool]] = []
    garbage: list[str] = []
    frozen_by_others = {_path(hv, s) for o in infos.values() if o.name != name for s in o.frozen.values()}
    for disk in info.disks:
        if disk.snapshot != "external" or disk.target not in info.frozen:
            continue
        base = _path(hv, info.frozen[disk.target])
        overlay = disk.file or ""
        chain = chains.get(disk.target, [])
        above = users(overlay) if overlay else []
        if overlay in existing and users(base) == [overlay] and all(p in chain for p in above):
            merges.append((disk.target, overlay, base, chain[:1] == [overlay]))
        elif not users(base) and base not in chain and base not in frozen_by_others:
            garbage.append(base)  # nothing hangs from it any more: only this snapshot kept it
        else:
            report.warn(f"keeping {os.path.basename(base)} for disk {disk.target}: other snapshots use it")
    if merges:
        _merge(hv, dom, merges, report, op)
        for other in infos.values():
            if other.name == name:
                continue
            moved = {t: base for t, overlay, base, _a in merges
                     if t in other.frozen and _path(hv, other.frozen[t]) == overlay}
            if moved:
                snap = hv_snap.lookup(dom, other.name)
                hv_snap.create(dom, xml_snap.redefine_xml(snap.xml(), frozen=moved), redefine=True,
                               current=other.current)
    for path in [m[1] for m in merges] + garbage + ([info.memory_file] if info.memory_file else []):
        _forget_file(hv, dom, path)
    hv_snap.lookup(dom, name).delete(metadata_only=True)


def _merge(hv: Hypervisor, dom: hv_domains.Domain, merges: list[tuple[str, str, str, bool]], report: Reporter,
           op: Operation) -> None:
    """Commit each overlay into its base; a shut-off VM is started paused for the jobs and stopped after."""
    started = False
    if not dom.is_active():
        report.phase("starting the VM paused for the merge (its CPUs do not run)")
        op.add("stop the VM started for the merge", undo_actions.destroy_domain(dom.uuid, dom.name,
                                                                                only_paused=True))
        hv_snap.start_paused(dom)
        started = True
        faults.point("snapshot-rm-paused")
    try:
        for disk, overlay, base, active in merges:
            report.phase(f"merging {os.path.basename(overlay)} into {os.path.basename(base)}")
            hv_snap.block_commit(dom, disk, top=overlay, base=base, active=active)
    finally:
        if started:
            dom.destroy()
    inactive = dom.xml(inactive=True)
    tops = _tops(hv, inactive)
    fix = {disk: base for disk, overlay, base, active in merges if active and tops.get(disk) == overlay}
    if fix:
        hv_domains.define(hv, xml_snap.retarget_domain_disks(inactive, fix))


# -- undo actions (journalled: a later kvmhub process runs them after a crash) ----------------------------


def _dom_by_uuid(ctx: Context, uuid: str) -> hv_domains.Domain | None:
    return hv_domains.lookup_uuid(ctx.hv, uuid)


@register("snapshot.forget_files")
def _undo_owned(ctx: Context, p: dict[str, Any]) -> None:
    if (dom := _dom_by_uuid(ctx, p["uuid"])) is not None:
        _set_owned(dom, [], p["refs"])


@register("snapshot.remove")
def _undo_snapshot(ctx: Context, p: dict[str, Any]) -> None:
    dom = _dom_by_uuid(ctx, p["uuid"])
    if dom is None or p["name"] not in {s.name for s in hv_snap.list_all(dom)}:
        return
    remove(ctx.hv, dom.name, p["name"], children=True)


@register("snapshot.redefine")
def _undo_redefine(ctx: Context, p: dict[str, Any]) -> None:
    if (dom := _dom_by_uuid(ctx, p["uuid"])) is not None:
        hv_snap.create(dom, p["xml"], redefine=True)
