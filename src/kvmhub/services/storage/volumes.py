"""Volumes in storage pools: create, list, show, resize, clone, remove, upload, download.

Every name a volume is created under is one path component ([A-Za-z0-9._+-], not starting with '.'), so
nothing is written outside its pool; volumes that resolve outside their pool's directory (a symlink put
there behind libvirt's back) are refused for reading and writing. Space is checked before a copy starts,
and a copy that still runs out of it is reported the same way, with nothing half-made left behind.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from kvmhub import faults
from kvmhub.errors import Conflict, HostProblem, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import ProjectUse, VolumeInfo
from kvmhub.ops.actions import StepLog
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.storage import usage as storage_usage
from kvmhub.services.storage import volume_projects
from kvmhub.services.storage.pools import local_root, resolve
from kvmhub.tools import qemu_img
from kvmhub.validate import format_size
from kvmhub.xml import pool as xml_pool
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse, scaled_bytes, serialize

VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")
VOLUME_NAME_RULE = "one path component of letters, digits, '.', '_', '+' and '-', not starting with '.'"
FILE_POOLS = ("dir", "fs", "netfs")
FORMATS = ("qcow2", "raw")
QCOW2_OVERHEAD = 1024**2  # what a fresh qcow2 (header, tables) takes before any data
MAX_CHAIN = 16
FLATTEN = "flatten it: `qemu-img convert -f qcow2 -O qcow2 SRC DST`"


def check_volume_name(name: str, pool: str = "") -> str:
    """Return ``name`` if a volume may be created under it, else raise InvalidInput saying why."""
    where = f" in pool {pool}" if pool else ""
    if "/" in name or "\x00" in name or name in (".", ".."):
        raise InvalidInput(
            f"invalid volume name {name!r}{where}: it tries to leave the pool",
            cause=f"a volume name is {VOLUME_NAME_RULE}; '/', '..' and NUL could reach files outside the pool",
            hint="give a plain name such as data.qcow2",
        )
    if not VOLUME_NAME_RE.fullmatch(name):
        raise InvalidInput(f"invalid volume name {name!r}{where}", cause=f"a volume name is {VOLUME_NAME_RULE}",
                           hint="give a plain name such as data.qcow2")
    return name


def split_ref(ref: str, *, default_pool: str | None = None) -> tuple[str, str]:
    """Split ``POOL/NAME`` (or a bare NAME with ``default_pool``); names that try to leave the pool are refused."""
    if "\x00" in ref:
        raise InvalidInput(f"invalid volume {ref!r}: it holds a NUL character")
    if ref.startswith("/"):
        raise InvalidInput(
            f"invalid volume {ref!r}: an absolute path is not a volume",
            cause="volumes are named POOL/NAME; a host path could reach any file on the host",
            hint="name it as POOL/NAME ({cmd:vol ls POOL} lists them)",
        )
    pool, slash, name = ref.partition("/")
    if not slash:
        if default_pool is None:
            raise InvalidInput(f"invalid volume {ref!r}: give it as POOL/NAME", hint="e.g. default/data.qcow2")
        pool, name = default_pool, ref
    if not pool or not name:
        raise InvalidInput(f"invalid volume {ref!r}: give it as POOL/NAME", hint="e.g. default/data.qcow2")
    if "/" in name or name in (".", ".."):
        raise InvalidInput(
            f"invalid volume name {name!r} in pool {pool}: it tries to leave the pool",
            cause=f"a volume name is {VOLUME_NAME_RULE}",
            hint="give a plain name such as data.qcow2",
        )
    return pool, name


def _active_pool(hv: Hypervisor, name: str) -> hv_storage.Pool:
    pool = hv_storage.lookup_pool(hv, name)
    if not pool.is_active():
        raise Conflict(f"pool {name!r} is not active", hint=f"start it: {{cmd:pool start {name}}}",
                       code="pool.inactive")
    return pool


def pool_kind(pool: hv_storage.Pool) -> tuple[str, str | None]:
    xml = pool.xml()
    return xml_pool.pool_type_from_xml(xml), xml_pool.pool_path_from_xml(xml)


def get_volume(hv: Hypervisor, ref: str) -> tuple[hv_storage.Pool, hv_storage.Volume]:
    pool_name, name = split_ref(ref)
    pool = _active_pool(hv, pool_name)
    if not pool.has_volume(name):
        raise NotFound(f"no volume {name!r} in pool {pool_name}", hint=f"list them: {{cmd:vol ls {pool_name}}}",
                       code="volume.not_found")
    return pool, pool.volume(name)


def check_confined(hv: Hypervisor, pool: hv_storage.Pool, vol: hv_storage.Volume) -> None:
    """Refuse a file pool's volume that resolves outside the pool's directory (a planted symlink).

    Raises InvalidInput naming the link and where it points; a remote host's volumes are left to libvirt.
    """
    kind, target = pool_kind(pool)
    root = local_root(hv)
    if kind not in FILE_POOLS or target is None or root is None:
        return
    inside = resolve(root, target)
    real = resolve(root, vol.path)
    outside = not real.startswith(inside.rstrip("/") + "/")
    if outside or os.path.islink(root + vol.path):
        where = f"outside pool {pool.name}" if outside else "elsewhere"
        raise InvalidInput(
            f"volume {pool.name}/{vol.name} is a symlink pointing {where} (to {real})",
            cause="reading or writing it would reach a file outside the pool's directory",
            hint=f"remove the link ({vol.path}) and refresh the pool: {{cmd:pool refresh {pool.name}}}",
        )


def _header(hv: Hypervisor, pool: hv_storage.Pool, vol: hv_storage.Volume, fmt: str) -> tuple[str | None, str | None]:
    """(backing file, data file) as the qcow2 header of a local volume names them; (None, None) if not readable."""
    root = local_root(hv)
    kind, _target = pool_kind(pool)
    local = Path(f"{root}{vol.path}") if root is not None and kind in FILE_POOLS else None
    if fmt != "qcow2" or local is None or not local.is_file():
        return None, None
    # -U: a running VM's disk holds QEMU's write lock; the header is read, nothing is written
    data = json.loads(qemu_img.run(["info", "--output=json", "-U", "-f", "qcow2", str(local)],
                                   what=f"reading {local}", cpu=30))
    specific = (data.get("format-specific") or {}).get("data") or {}
    backing = data.get("full-backing-filename") or data.get("backing-filename")
    return (str(backing) if backing else None), (str(specific["data-file"]) if specific.get("data-file") else None)


def check_chain(hv: Hypervisor, pool: hv_storage.Pool, vol: hv_storage.Volume, fmt: str | None = None) -> None:
    """Refuse a volume whose backing chain, at any depth, leaves the storage pools.

    Every level must be a qcow2 or raw volume of a pool, inside its pool's directory, with no external
    data file; backing files are taken from libvirt and, for local files, from the qcow2 header itself
    (read with an explicit format: ``fmt`` for the volume itself when it is to be opened as that, else what
    libvirt probed). Raises InvalidInput naming the level and the file it reaches.
    """
    ref = f"{pool.name}/{vol.name}"
    seen: set[str] = set()
    level_pool, level = pool, vol
    for depth in range(MAX_CHAIN):
        here = f"{level_pool.name}/{level.name}"
        via = f" (through {here})" if depth else ""
        check_confined(hv, level_pool, level)
        facts = xml_volume.volume_from_xml(level.xml())
        fmt = (fmt if depth == 0 else None) or facts.format or "raw"
        if fmt not in FORMATS:
            raise InvalidInput(f"volume {ref}{via} is a {fmt} image", cause="kvmhub reads qcow2 and raw disks only; "
                               "other formats can name further files on the host",
                               hint="convert it: `qemu-img convert -f FORMAT -O qcow2 SRC DST`")
        header_backing, data_file = _header(hv, level_pool, level, fmt)
        if data_file:
            raise InvalidInput(
                f"volume {ref}{via} keeps its data in another file ({data_file})",
                cause="an external data file could expose any host file or device to the guest", hint=FLATTEN,
            )
        backing = header_backing or facts.backing_path
        if fmt != "qcow2" or not backing:
            return
        below = hv_storage.volume_by_path(hv, backing)
        if below is None or backing in seen:
            raise InvalidInput(
                f"volume {ref} is backed{via} by {backing}, "
                + ("a loop in its chain" if below is not None else "a file no storage pool holds"),
                cause="a backing file outside the pools could expose any host file to the guest", hint=FLATTEN,
            )
        seen.add(backing)
        level_pool, level = hv_storage.lookup_pool(hv, below.pool), below
    raise InvalidInput(f"volume {ref} has a backing chain deeper than {MAX_CHAIN} levels", hint=FLATTEN)


def _no_space(pool: hv_storage.Pool, needed: int, available: int | None = None) -> HostProblem:
    _kind, target = pool_kind(pool)
    if available is None:
        try:
            pool.refresh()
            available = pool.state().available
        except KvmhubError:
            available = 0
    where = f" ({target})" if target else ""
    return HostProblem(
        f"no space left in pool {pool.name}{where}: needed ~{format_size(needed)}, "
        f"available {format_size(available)}",
        cause="the pool's storage is too full for this volume",
        hint="free space in the pool ({cmd:vol ls}, {cmd:vol rm}), or use a pool with room "
        "({cmd:pool ls} shows what each has available)",
        code="host.no_space",
    )


def check_space(pool: hv_storage.Pool, needed: int) -> None:
    pool.refresh()
    available = pool.state().available
    if needed > available:
        raise _no_space(pool, needed, available)


def _is_enospc(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, KvmhubError):
        text = f"{exc.message} {exc.original or ''}".lower()
        return "no space left" in text or "enospc" in text or "disk quota" in text
    return False


def _info(vol: hv_storage.Volume, usage: storage_usage.Usage | None = None,
          backs: list[str] | None = None, *, owners: volume_projects.Owners | None = None,
          project: str | None = None) -> VolumeInfo:
    vi = vol.info()
    facts = xml_volume.volume_from_xml(vol.xml())
    backing_volume = None
    if facts.backing_path:
        below = hv_storage.volume_by_path(vol.hv, facts.backing_path)
        backing_volume = f"{below.pool}/{below.name}" if below is not None else None
    info = VolumeInfo(
        pool=vol.pool, name=vol.name, path=vi.path, format=facts.format, capacity_bytes=vi.capacity,
        allocation_bytes=vi.allocation, backing=facts.backing_path, backing_volume=backing_volume,
        used_by=usage.vms_using(vol.pool, vol.name, vi.path) if usage else [], backs=backs or [],
    )
    info.project = project or (owners or volume_projects.Owners(vol.hv)).of(info)
    return info


def list_volumes(hv: Hypervisor, pool_name: str, *, only: frozenset[str] | None = None) -> list[VolumeInfo]:
    """The volumes of an active pool, with format, sizes, backing file, the VMs using each and its project (only
    those of ``only``'s projects when given)."""
    pool = _active_pool(hv, pool_name)
    usage = storage_usage.scan(hv)
    owners = volume_projects.Owners(hv)
    return volume_projects.visible([_info(pool.volume(n), usage, owners=owners)
                                    for n in sorted(pool.volume_names())], only)


def show_volume(hv: Hypervisor, ref: str) -> VolumeInfo:
    """One volume: format, sizes, path, backing file, VMs using it, overlays backed by it."""
    _pool, vol = get_volume(hv, ref)
    return _info(vol, storage_usage.scan(hv), storage_usage.overlays_of(hv, vol.path))


def _physical(xml: str) -> int | None:
    """The file's own size (``<physical>``): what a download of a qcow2 volume streams."""
    el = parse(xml, "volume").find("physical")
    return scaled_bytes(el, "the volume's physical size", "bytes") if el is not None else None


def _set_allocation(xml: str, allocation: int) -> str:
    root = parse(xml, "volume")
    el = root.find("allocation")
    if el is not None:
        el.text = str(allocation)
    return serialize(root)


def create_volume(hv: Hypervisor, ref: str, size: int | None, *, fmt: str | None = None,
                  backing: str | None = None, allocate: bool = False, project: str | None = None) -> VolumeInfo:
    """A new empty volume (or a qcow2 overlay of ``backing``, POOL/VOL) of ``project`` (default: ``default``);
    sparse unless ``allocate``.

    Raises InvalidInput (name, size, format), NotFound, Conflict (name taken), HostProblem (no space),
    QuotaExceeded (the project's disk quota).
    """
    pool_name, name = split_ref(ref)
    check_volume_name(name, pool_name)
    pool = _active_pool(hv, pool_name)
    kind, _target = pool_kind(pool)
    if pool.has_volume(name):
        raise Conflict(f"volume {name!r} already exists in pool {pool_name}",
                       hint=f"pick another name, or {{cmd:vol rm {pool_name}/{name}}} first", code="name.taken")
    fmt = fmt or ("qcow2" if kind in FILE_POOLS else "raw")
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown volume format {fmt!r}", hint="qcow2 or raw")
    if fmt == "qcow2" and kind not in FILE_POOLS:
        raise InvalidInput(f"a {kind} pool holds raw volumes only", hint="pass {opt:format} raw")
    backing_path = backing_fmt = None
    if backing is not None:
        if fmt != "qcow2":
            raise InvalidInput("only a qcow2 volume can have a backing volume", hint="drop {opt:format} raw")
        bpool, bvol = get_volume(hv, backing)
        check_chain(hv, bpool, bvol)
        backing_path = bvol.path
        backing_fmt = xml_volume.volume_from_xml(bvol.xml()).format or "raw"
        base = bvol.info().capacity
        if size is not None and size < base:
            raise InvalidInput(f"{{opt:size}} {format_size(size)} is smaller than the backing volume "
                               f"({format_size(base)})",
                               hint="give at least the backing volume's size, or leave {opt:size} out")
        size = size or base
    if size is None:
        raise InvalidInput("a new volume needs {opt:size}", hint="e.g. {opt:size} 10G")
    xml = xml_volume.volume_xml(name, size, fmt, backing_path, backing_fmt)
    if allocate:
        xml = _set_allocation(xml, size)
    check_space(pool, (size if allocate else 0) + (QCOW2_OVERHEAD if fmt == "qcow2" else 0))
    what = f"creating volume {name}"
    reads = [LockSpec("volume", backing, shared=True)] if backing is not None else []
    return make_volume(hv, "volume.create", pool, name, size if allocate else QCOW2_OVERHEAD,
                 lambda op: created_with_undo(op, pool, name, lambda: pool.create_volume(xml, what=what)),
                 reads=reads, fault="vol-create", project=project, capacity=size)


Make = Callable[[Operation], hv_storage.Volume]


def make_volume(hv: Hypervisor, kind: str, pool: hv_storage.Pool, name: str, needed: int, make: Make, *,
                reads: list[LockSpec] | None = None, fault: str, report: Reporter = QUIET,
                project: str | None = None, capacity: int = 0) -> VolumeInfo:
    """Run ``make(op)`` as a journalled operation; whatever fails after the volume exists (no space, Ctrl-C, a
    crash, the project's disk quota) removes it again. The name is checked again under the volume's lock, so the
    undo journalled before libvirt makes it can only ever remove the volume this operation made. The volume is
    recorded as ``project``'s; ``capacity`` (what it is expected to hold) is checked against the project's disk
    quota before, the capacity it has after.
    """
    owner = projects.resolve(project)
    ref = f"{pool.name}/{name}"
    locks = [LockSpec("volume", ref), LockSpec("pool", pool.name, shared=True), *(reads or []),
             projects.lock(owner)]
    with Operation(hv, kind, ref, locks=locks, report=report) as op:
        if pool.has_volume(name):
            raise Conflict(f"volume {name!r} already exists in pool {pool.name}",
                           hint=f"pick another name, or {{cmd:vol rm {ref}}} first", code="name.taken")
        projects.check(hv, owner, ProjectUse(disk=capacity))
        try:
            vol = make(op)
        except (KvmhubError, OSError) as exc:
            if _is_enospc(exc):
                raise _no_space(pool, needed) from exc
            raise
        made = vol.info().capacity
        if made > capacity:  # an uploaded qcow2 holds more than its length
            projects.check(hv, owner, ProjectUse(disk=made))
        faults.point(fault)
        projects.record_volume(hv.uri, ref, vol.path, owner)
        op.success()
    return _info(vol, project=owner)


def created_with_undo(op: StepLog, pool: hv_storage.Pool, name: str, create: Callable[[], hv_storage.Volume], *,
                      building: bool = False) -> hv_storage.Volume:
    """Journal the deletion of volume ``name`` in ``pool``, then ``create()`` it and record its key, so the undo
    (in this process or after a crash) deletes that volume and no other. The caller holds the volume's lock and
    has seen the name free under it. ``building``: libvirt copies into the volume, an undo waits for the copy."""
    op.add(f"delete volume {name}", undo_actions.delete_volume(pool.name, name, building=building))
    vol = create()
    op.made(key=vol.path)
    return vol


def clone_volume(hv: Hypervisor, src_ref: str, dst_ref: str, *, linked: bool = False,
                 fmt: str | None = None, project: str | None = None) -> VolumeInfo:
    """Copy a volume (full, through libvirt), or make a qcow2 overlay backed by it (``linked``), as a volume of
    ``project`` (default: ``default``).

    ``dst_ref`` is POOL/NAME or a NAME in the source's pool. Refused while a running VM writes the
    source (a full copy would be torn; an overlay's base must not change).
    """
    spool, src = get_volume(hv, src_ref)
    dpool_name, dname = split_ref(dst_ref, default_pool=spool.name)
    check_volume_name(dname, dpool_name)
    dpool = _active_pool(hv, dpool_name)
    dkind, _target = pool_kind(dpool)
    if dpool.has_volume(dname):
        raise Conflict(f"volume {dname!r} already exists in pool {dpool_name}",
                       hint=f"pick another name, or {{cmd:vol rm {dpool_name}/{dname}}} first", code="name.taken")
    check_chain(hv, spool, src)
    usage = storage_usage.scan(hv)
    writers = usage.vms_writing(spool.name, src.name, src.path)
    busy = [vm for vm in writers if vm in usage.running or linked]
    if busy:
        raise Conflict(
            f"volume {spool.name}/{src.name} is the disk of VM{'s' if len(busy) > 1 else ''} {', '.join(busy)}",
            cause="an overlay's base must never change" if linked else "a copy of a disk in use would be torn",
            hint="stop the VM first" if not linked else "clone it in full (without {opt:linked}), or remove the VM",
            code="volume.in_use",
        )
    info = src.info()
    src_fmt = xml_volume.volume_from_xml(src.xml()).format or "raw"
    reads = [LockSpec("volume", f"{spool.name}/{src.name}", shared=True)]
    if linked:
        if dkind not in FILE_POOLS:
            raise InvalidInput(f"a linked clone is a qcow2 file; pool {dpool_name} is a {dkind} pool",
                               hint="put it in a dir, fs or netfs pool, or clone in full")
        xml = xml_volume.volume_xml(dname, info.capacity, "qcow2", src.path, src_fmt)
        check_space(dpool, QCOW2_OVERHEAD)
        return make_volume(hv, "volume.clone", dpool, dname, QCOW2_OVERHEAD, lambda op: created_with_undo(
            op, dpool, dname, lambda: dpool.create_volume(xml, what=f"creating {dname}")), reads=reads,
            fault="vol-clone", project=project, capacity=info.capacity)
    out_fmt = fmt or (src_fmt if dkind in FILE_POOLS and src_fmt in FORMATS else "raw")
    if out_fmt not in FORMATS:
        raise InvalidInput(f"unknown volume format {out_fmt!r}", hint="qcow2 or raw")
    xml = xml_volume.volume_xml(dname, info.capacity, out_fmt)
    needed = max(info.allocation, QCOW2_OVERHEAD)
    check_space(dpool, needed)
    # a copy can take up to the full capacity (compressed or sparse sources grow when written out)
    return make_volume(hv, "volume.clone", dpool, dname, max(needed, info.capacity), lambda op: created_with_undo(
        op, dpool, dname,
        lambda: dpool.create_volume_from(xml, src, what=f"copying {spool.name}/{src.name} to {dname}"),
        building=True), reads=reads, fault="vol-clone", project=project, capacity=info.capacity)


def resize_volume(hv: Hypervisor, ref: str, size: int, *, grow_by: bool = False, shrink: bool = False) -> VolumeInfo:
    """Set a volume's capacity (or grow it by ``size``); shrinking is refused unless ``shrink``.

    Refused while a running VM has the volume as a disk (`kvmhub disk resize` does that live).
    """
    pool, vol = get_volume(hv, ref)
    check_confined(hv, pool, vol)
    current = vol.info().capacity
    new = current + size if grow_by else size
    if new == current:
        return _info(vol, storage_usage.scan(hv))
    if new < current and not shrink:
        raise InvalidInput(
            f"{pool.name}/{vol.name} is {format_size(current)}; {format_size(new)} would shrink it",
            cause="shrinking cuts off everything past the new end: file systems or partitions that reach "
            "there are destroyed",
            hint="shrink the file system inside first, then pass {opt:shrink}",
        )
    usage = storage_usage.scan(hv)
    running = [vm for vm in usage.vms_writing(pool.name, vol.name, vol.path) if vm in usage.running]
    if running:
        raise Conflict(f"volume {pool.name}/{vol.name} is a disk of running VM {', '.join(running)}",
                       cause="QEMU holds the image open; resizing it underneath would confuse the guest",
                       hint=f"resize it live: {{cmd:disk resize {running[0]} TARGET SIZE}}, or stop the VM",
                       code="volume.in_use")
    ref = f"{pool.name}/{vol.name}"
    owner = _info(vol, usage).project
    with Operation(hv, "volume.resize", ref, locks=[LockSpec("volume", ref), projects.lock(owner)]) as op:
        projects.check(hv, owner, ProjectUse(disk=max(0, new - current)))
        op.add(f"resize volume {ref} from {current} to {new} bytes")  # a resize has no undo
        try:
            vol.resize(new, shrink=new < current)
        except KvmhubError as exc:
            if _is_enospc(exc):
                raise _no_space(pool, new - current) from exc
            raise
        op.success()
    return _info(vol, usage, project=owner)


def remove_volume(hv: Hypervisor, ref: str) -> None:
    """Delete a volume; refused while a VM uses it or another volume is backed by it (naming them)."""
    pool, vol = get_volume(hv, ref)
    path = vol.path
    users = storage_usage.scan(hv).vms_using(pool.name, vol.name, path)
    if users:
        raise Conflict(f"volume {pool.name}/{vol.name} is in use by VM{'s' if len(users) > 1 else ''}: "
                       f"{', '.join(users)}", hint="remove those VMs or their disks first ({cmd:rm VM})",
                       code="volume.in_use")
    overlays = storage_usage.overlays_of(hv, path)
    if overlays:
        raise Conflict(f"volume {pool.name}/{vol.name} backs other volumes: {', '.join(overlays)}",
                       cause="they are linked clones; their data below their own changes lives here",
                       hint="remove those first ({cmd:vol rm POOL/VOL})", code="volume.in_use")
    ref = f"{pool.name}/{vol.name}"
    with Operation(hv, "volume.rm", ref, locks=[LockSpec("volume", ref)]) as op:
        op.add(f"delete volume {ref}")  # deleted data cannot come back: no undo
        vol.delete()
        projects.forget_volume(hv.uri, ref)
        op.success()


def upload(hv: Hypervisor, ref: str, src: Path, *, fmt: str | None = None, report: Reporter = QUIET,
           project: str | None = None) -> VolumeInfo:
    """Upload a file on this host into a new volume sized to the file (hostile headers refused).

    A failed, interrupted or cancelled (``report.cancel``) upload leaves no volume behind.
    """
    pool_name, name = split_ref(ref)
    check_volume_name(name, pool_name)
    try:
        st = os.stat(src)
    except OSError as exc:
        raise InvalidInput(f"cannot read {src}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{src} is not a regular file", cause="an upload streams one file's bytes; "
                           "directories, devices and pipes have no fixed length to size the volume by",
                           hint="give the path of an image file (qcow2 or raw)")
    sniffed = qemu_img.sniff_format(src)
    fmt = fmt or sniffed
    if fmt not in FORMATS:
        raise InvalidInput(f"{src} is {fmt}; volumes take qcow2 or raw files",
                           hint=f"convert it: `qemu-img convert -f {fmt} -O qcow2 {src} out.qcow2`, "
                           "or {cmd:image import} it")
    qemu_img.check_safe(src, fmt)
    pool = _active_pool(hv, pool_name)
    kind, target = pool_kind(pool)
    if kind not in FILE_POOLS:
        raise InvalidInput(f"pool {pool_name} is a {kind} pool; uploads make new files in dir, fs or netfs pools")
    if pool.has_volume(name):
        raise Conflict(f"volume {name!r} already exists in pool {pool_name}",
                       hint=f"upload under another name, or {{cmd:vol rm {pool_name}/{name}}} first", code="name.taken")
    root = local_root(hv)
    if root is not None and target is not None and os.path.lexists(f"{root}{target}/{name}"):
        raise Conflict(f"{target}/{name} already exists in pool {pool_name}'s directory",
                       cause="a file (or link) libvirt does not list as a volume yet",
                       hint=f"{{cmd:pool refresh {pool_name}}} and look at it with {{cmd:vol show}}")
    length = st.st_size
    check_space(pool, length)
    # the bytes replace the file whole; a refresh makes libvirt read the uploaded qcow2 header
    xml = xml_volume.volume_xml(name, length, "raw", None, None)

    def make(op: Operation) -> hv_storage.Volume:
        vol = created_with_undo(op, pool, name, lambda: pool.create_volume(xml, what=f"creating volume {name}"))
        with open(src, "rb") as raw, hv_storage.cancellable(raw) as fh:
            vol.upload(fh, length, lambda n: op.progress(f"uploading {src.name}", n, length))
        pool.refresh()
        return pool.volume(name)

    return make_volume(hv, "volume.upload", pool, name, length, make, fault="vol-upload", report=report,
                       project=project, capacity=length)


def download_target(dest: Path, name: str, *, overwrite: bool) -> Path:
    """Where a download of volume ``name`` to ``dest`` (a file, or a directory to put ``name`` in) writes;
    Conflict when the file exists and ``overwrite`` is not given, InvalidInput when its directory is missing."""
    if dest.is_dir():
        dest = dest / name
    if os.path.lexists(dest) and not overwrite:
        raise Conflict(f"{dest} already exists", hint="pass {opt:overwrite}, or choose another file")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"cannot download into {dest}: no directory {parent}",
                           cause="the file's directory does not exist (or is not a directory)",
                           hint=f"create it first (`mkdir -p {parent}`), or give an existing directory")
    return dest


def download(hv: Hypervisor, ref: str, dest: Path, *, overwrite: bool = False,
             report: Reporter = QUIET) -> VolumeInfo:
    """Copy a volume's bytes into a file on this host; a failed, interrupted or cancelled download leaves no
    file behind."""
    pool, vol = get_volume(hv, ref)
    check_confined(hv, pool, vol)
    info = vol.info()
    xml = vol.xml()
    facts = xml_volume.volume_from_xml(xml)
    dest = download_target(dest, vol.name, overwrite=overwrite)
    parent = dest.parent
    expected = (_physical(xml) or info.allocation) if facts.format == "qcow2" else info.capacity
    free = shutil.disk_usage(parent).free
    if expected > free:
        raise HostProblem(f"no space left in {parent}: needed ~{format_size(expected)}, available "
                          f"{format_size(free)}", hint="free space there, or download elsewhere")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            with hv_storage.cancellable(fh) as out:
                vol.download(out, lambda n: report.bytes(f"downloading {ref}", n, expected))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _is_enospc(exc) or (exc.__cause__ is not None and _is_enospc(exc.__cause__)):
            raise HostProblem(f"no space left in {parent}: needed ~{format_size(expected)}, available "
                              f"{format_size(shutil.disk_usage(parent).free)}",
                              hint="free space there, or download elsewhere") from exc
        raise
    return _info(vol, storage_usage.scan(hv))
