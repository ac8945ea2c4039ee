"""Disks on VMs: add, remove, resize and list them (hot-plugged when the VM runs, always persisted),
disks on network exports reached by QEMU's own clients, and a new VM's boot disk from a volume or a URL."""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kvmhub import faults
from kvmhub.errors import Conflict, HostProblem, InvalidInput, KvmhubError, NotFound, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv import blocks as hv_blocks
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.models import DiskSource, DiskSpec, KvmhubMeta, ProjectUse, VMSpec
from kvmhub.models.disk import DiskInfo
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.storage import bases, encryption, volumes
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.vm import lifecycle as vms
from kvmhub.validate import format_size, parse_size
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.controller import has_scsi_controller, scsi_controller_xml
from kvmhub.xml.disk import disk_targets, disk_to_xml
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.metadata import metadata_to_xml

if TYPE_CHECKING:
    from kvmhub.models.requests_vm import CreateRequest

URL_SCHEMES = ("nfs", "iscsi", "nbd", "http", "https")
URL_EXAMPLES = "nfs://HOST/EXPORT/FILE, iscsi://HOST[:PORT]/IQN/LUN, nbd://HOST[:PORT][/EXPORT], https://HOST/FILE"
BUSES = ("virtio", "scsi", "sata")
FORMATS = ("qcow2", "raw")
UNPLUG_SECONDS = 60.0
_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd"}
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*\.?$")
_IQN = re.compile(r"^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[^\s/]+)?|eui\.[0-9a-f]{16}|naa\.[0-9a-f]{16,32})$", re.I)


def _quiet(_msg: str) -> None:
    pass


# ---- network exports ----


def _bad_url(url: str, cause: str) -> InvalidInput:
    return InvalidInput(f"cannot use disk URL {url!r}", cause=cause, hint=f"forms kvmhub takes: {URL_EXAMPLES}")


def _url_host(url: str, host: str | None) -> str:
    if not host:
        raise _bad_url(url, "it names no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise _bad_url(url, f"{host!r} is not a host name or IP address")
    return host


def _url_segments(url: str, path: str) -> list[str]:
    segs = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segs):
        raise _bad_url(url, "the path holds '.' or '..'")
    return segs


def parse_url(url: str) -> DiskSource:
    """The network source for a disk URL: nfs://HOST/EXPORT/FILE, iscsi://HOST[:PORT]/IQN/LUN,
    nbd://HOST[:PORT][/EXPORT] or http(s)://HOST[:PORT]/PATH.

    Raises InvalidInput for another scheme, credentials or a query in the URL (they would sit in the
    VM definition in clear), a malformed host, port or path.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise _bad_url(url, f"kvmhub attaches {', '.join(URL_SCHEMES)} exports; not {scheme or 'a bare path'!r}")
    if parts.username is not None or parts.password is not None:
        raise _bad_url(url, "credentials in a disk URL would be stored in the VM definition in clear")
    if parts.query or parts.fragment:
        raise _bad_url(url, "disk URLs take no query (?...) or fragment (#...)")
    host = _url_host(url, parts.hostname)
    try:
        port = parts.port
    except ValueError:
        raise _bad_url(url, "the port is not a number from 1 to 65535") from None
    if port == 0:
        raise _bad_url(url, "the port is not a number from 1 to 65535")
    segs = _url_segments(url, parts.path)
    name: str | None
    if scheme == "nfs":
        if port is not None:
            raise _bad_url(url, "QEMU's NFS client asks the server's rpcbind for its ports; a port cannot be given")
        if len(segs) < 2 or parts.path.endswith("/"):
            raise _bad_url(url, "an NFS disk needs the export and the file: nfs://HOST/EXPORT/FILE")
        name = "/" + "/".join(segs)
    elif scheme == "iscsi":
        if len(segs) != 2 or not _IQN.match(segs[0]) or not segs[1].isdigit():
            raise _bad_url(url, "an iSCSI disk needs the target's IQN and a LUN number: iscsi://HOST/IQN/LUN")
        name = f"{segs[0]}/{int(segs[1])}"
    elif scheme == "nbd":
        if len(segs) > 1:
            raise _bad_url(url, "an NBD URL names at most one export: nbd://HOST:PORT/EXPORT")
        name = segs[0] if segs else None
    else:
        if not segs:
            raise _bad_url(url, "an HTTP disk needs the path of the file")
        name = "/" + "/".join(segs)
    return DiskSource(protocol=scheme, host=host, port=port, name=name)  # type: ignore[arg-type]


def source_text(src: DiskSource) -> str:
    """A disk source as users write it: pool/volume, a path, or a URL."""
    if src.protocol is not None:
        host = f"[{src.host}]" if src.host and ":" in src.host else src.host or ""
        port = f":{src.port}" if src.port else ""
        name = src.name or ""
        slash = "" if name.startswith("/") or not name else "/"
        return f"{src.protocol}://{host}{port}{slash}{name}"
    if src.pool is not None:
        return f"{src.pool}/{src.volume}"
    return src.path or "-"


def url_format(src: DiskSource) -> str:
    """The format a network export holds when the user does not say: NBD and iSCSI serve guest data
    (qemu-nbd decodes the image it exports), files named *.qcow2 are qcow2, anything else raw."""
    if src.protocol in ("nfs", "http", "https") and (src.name or "").lower().endswith(".qcow2"):
        return "qcow2"
    return "raw"


# ---- existing volumes ----


def _check_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"unknown disk format {fmt!r}", hint="qcow2 or raw")


def _users(hv: Hypervisor, pool: str, volume: str, path: str | None) -> list[str]:
    """Names of the VMs whose disks are this volume."""
    found = []
    for dom in hv_domains.list_all(hv):
        try:
            spec = domain_from_xml(dom.xml(inactive=dom.is_persistent()))
        except KvmhubError:
            continue  # a definition kvmhub cannot read holds no disk it could clash with
        for d in spec.disks:
            src = d.source
            if (src.pool == pool and src.volume == volume) or (path is not None and src.path == path):
                found.append(dom.name)
                break
    return found


def existing_volume(hv: Hypervisor, ref: str, fmt: str | None = None) -> tuple[DiskSource, str]:
    """The source and format for attaching volume POOL/VOL in place.

    Raises InvalidInput for a malformed reference, a volume of the image store, an unknown format, a
    symlink leading out of its pool or a backing chain that leaves the pools; NotFound for a missing pool
    or volume; Conflict when another VM already uses the volume.
    """
    _check_format(fmt)
    pool_name, sep, vol_name = ref.partition("/")
    if not sep or not pool_name or not vol_name or "/" in vol_name:
        raise InvalidInput(f"{{opt:vol}} {ref!r} is not POOL/VOLUME", hint="e.g. {opt:vol} default/data.qcow2")
    if pool_name == pools.IMAGES_POOL:
        raise InvalidInput(
            f"{{opt:vol}} {ref}: volumes of {pools.IMAGES_POOL} are kvmhub's images",
            cause="writing to an image in place would change every VM cloned from it",
            hint="make a VM from it with {opt:image}, or copy it into another pool first",
        )
    pool = hv_storage.lookup_pool(hv, pool_name)
    if not pool.is_active():
        raise Conflict(f"pool {pool_name} is not running", hint=f"start it: `virsh pool-start {pool_name}`",
                       code="pool.inactive")
    vol = pool.volume(vol_name)
    facts = xml_volume.volume_from_xml(vol.xml())
    reported = facts.format or "raw"
    if fmt is None:
        if reported not in FORMATS:
            raise InvalidInput(
                f"volume {ref} holds a {reported} image",
                cause="kvmhub attaches qcow2 and raw disks",
                hint="convert it: `qemu-img convert -f FORMAT -O qcow2 SRC DST`, or {cmd:image import}",
            )
        fmt = reported
    volumes.check_chain(hv, pool, vol, fmt)
    users = _users(hv, pool_name, vol_name, facts.path)
    if users:
        raise Conflict(
            f"volume {ref} is already a disk of {', '.join(users)}",
            cause="two VMs writing one disk corrupt it",
            hint=f"remove it there first ({{cmd:disk rm {users[0]} TARGET --keep}}), or clone it", code="volume.in_use",
        )
    return DiskSource(pool=pool_name, volume=vol_name), fmt


def boot_disk_of(hv: Hypervisor, req: CreateRequest) -> DiskSpec:
    """The boot disk of a new VM made from an existing volume (``req.vol``, used in place: not cloned,
    not owned) or a network export (``req.disk_url``). Raises like :func:`existing_volume` and
    :func:`parse_url`, and InvalidInput for options that only fit a disk cloned from an image."""
    given = [opt for opt, val in (("{opt:image}", req.image), ("{opt:vol}", req.vol),
                                  ("{opt:disk_url}", req.disk_url)) if val]
    if len(given) > 1:
        raise InvalidInput(f"{' and '.join(given)} all name the boot disk", hint="give one of them")
    what = "{opt:vol}" if req.vol is not None else "{opt:disk_url}"
    if req.disk is not None:
        raise InvalidInput(f"{{opt:disk}} grows a disk cloned from an image; {what} boots a disk as it is",
                           hint="grow it afterwards: {cmd:disk resize NAME vda SIZE}")
    if req.encrypt:
        raise InvalidInput(f"{{opt:encrypt}} makes a new encrypted disk; {what} boots an existing one",
                           hint="drop {opt:encrypt}")
    if req.vol is not None:
        source, fmt = existing_volume(hv, req.vol)
        return DiskSpec(format=fmt, source=source)  # type: ignore[arg-type]
    assert req.disk_url is not None
    source = parse_url(req.disk_url)
    return DiskSpec(format=url_format(source), source=source,  # type: ignore[arg-type]
                    readonly=source.protocol in ("http", "https"))


def with_boot_disk(spec: VMSpec, boot: DiskSpec, pool: str, cloned_volume: str) -> VMSpec:
    """``spec`` with the disk it would clone (``pool/cloned_volume``) replaced by ``boot``'s source, keeping
    that disk's place (target, bus, boot order, tuning); the replaced volume is no longer owned."""
    disks = []
    for d in spec.disks:
        if d.source.pool == pool and d.source.volume == cloned_volume:
            d = d.model_copy(update={"source": boot.source, "format": boot.format, "readonly": boot.readonly,
                                     "encryption_secret": None})
        disks.append(d)
    ref = f"{pool}/{cloned_volume}"
    meta = spec.meta.model_copy(update={"owned_volumes": [v for v in spec.meta.owned_volumes if v != ref]})
    return spec.model_copy(update={"disks": disks, "meta": meta})


# ---- disks on VMs ----


def _next_target(bus: str, taken: set[str]) -> str:
    prefix = _PREFIX[bus]
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in taken:
            return prefix + letter
    raise Conflict(f"no free {bus} disk name ({prefix}a to {prefix}z are taken)", hint="remove a disk first")


def _check_target(bus: str, target: str, taken: set[str]) -> None:
    prefix = _PREFIX[bus]
    if not re.fullmatch(prefix + r"[a-z]{1,2}", target):
        raise InvalidInput(f"{{opt:target}} {target!r} does not fit bus {bus}",
                           hint=f"{bus} disks are named {prefix}b, {prefix}c...")
    if target in taken:
        raise Conflict(f"the VM already has a disk {target}", hint="pick another {opt:target}, or leave it out")


def _volume_name(pool: hv_storage.Pool, vm: str, fmt: str) -> str:
    names = {name.rsplit(".", 1)[0] for name in pool.volume_names()}
    n = 1
    while f"{vm}-disk{n}" in names:
        n += 1
    return f"{vm}-disk{n}." + ("qcow2" if fmt == "qcow2" else "img")


def _update_meta(dom: hv_domains.Domain, change: Callable[[KvmhubMeta], None]) -> None:
    meta = domain_from_xml(dom.xml(inactive=True)).meta
    change(meta)
    dom.set_metadata(metadata_to_xml(meta))


def _delete_volume(pool: hv_storage.Pool, name: str) -> None:
    if pool.has_volume(name):
        pool.volume(name).delete()


def add(
    hv: Hypervisor,
    vm: str,
    *,
    size: str | None = None,
    vol: str | None = None,
    url: str | None = None,
    bus: str = "virtio",
    readonly: bool = False,
    fmt: str | None = None,
    encrypt: bool = False,
    target: str | None = None,
    report: Reporter = QUIET,
) -> tuple[DiskSpec, bool]:
    """Add a disk: a new volume of ``size`` (owned by the VM), the existing volume ``vol`` (POOL/VOL) or
    the network export ``url``. Hot-plugged when the VM runs, always persisted; returns (disk, live).

    Raises InvalidInput / NotFound / Conflict before anything is made; undoes what it made on failure.
    """
    dom = vms.get(hv, vm)
    if sum(x is not None for x in (size, vol, url)) != 1:
        raise InvalidInput("give one of {opt:size}, {opt:vol} and {opt:url}", hint="{opt:size} 10G makes a new volume")
    if bus not in BUSES:
        raise InvalidInput(f"unknown bus {bus!r}", hint="virtio, scsi or sata")
    _check_format(fmt)
    live = dom.is_active()
    if bus == "sata" and live:
        raise Conflict(
            f"cannot hot-plug a sata disk into {vm}: it is running",
            cause="QEMU's SATA (AHCI) controller does not support hot-plug",
            hint=f"use {{opt:bus}} virtio or {{opt:bus}} scsi, or stop the VM first: {{cmd:stop {vm}}}",
            code="vm.wrong_state",
        )
    if encrypt and size is None:
        raise InvalidInput("{opt:encrypt} makes a new LUKS volume: it goes with {opt:size}",
                           hint="e.g. {opt:size} 10G {opt:encrypt}")
    if encrypt and fmt == "raw":
        raise InvalidInput("{opt:encrypt} needs format qcow2 (LUKS inside qcow2)", hint="drop {opt:format} raw")
    taken = disk_targets(dom.xml(inactive=True)) | (disk_targets(dom.xml()) if live else set())
    if target is None:
        target = _next_target(bus, taken)
    else:
        _check_target(bus, target, taken)
    capacity = 0
    if url is not None:
        source = parse_url(url)
        disk_fmt = fmt or url_format(source)
        if source.protocol in ("http", "https"):
            readonly = True  # QEMU's curl client cannot write
    elif vol is not None:
        source, disk_fmt = existing_volume(hv, vol, fmt)
    else:
        assert size is not None
        capacity = parse_size(size, what="disk size", default_unit="G")
        if capacity < 1024**2:
            raise InvalidInput(f"{{opt:size}} {size} is too small", hint="at least 1M")
        disk_fmt = fmt or "qcow2"
    pool = pools.disks_pool(hv) if size is not None else None
    project = projects.project_of(domain_from_xml(dom.xml(inactive=True)).meta)
    locks = [LockSpec("vm", vm), projects.lock(project)]
    if pool is not None:
        locks.append(LockSpec("pool", pool.name, shared=True))
    elif vol is not None:
        locks.append(LockSpec("volume", vol))
    with Operation(hv, "disk.add", vm, locks=locks, report=report) as op:
        # under the VM's lock: another disk add of this VM may have taken the name meanwhile
        if target in disk_targets(dom.xml(inactive=True)) | (disk_targets(dom.xml()) if live else set()):
            raise Conflict(f"the VM already has a disk {target}", hint="pick another {opt:target}, or retry")
        attached = VMSpec(name=vm, disks=[DiskSpec(target=target, source=source, readonly=readonly)]) \
            if vol is not None else None
        projects.check(hv, project, ProjectUse(disk=capacity or (projects.disk_bytes(hv, attached) if attached else 0)))
        secret: str | None = None
        vol_name = _volume_name(pool, vm, disk_fmt) if pool is not None else None
        if pool is not None and vol_name is not None:
            if encrypt:
                report.phase("make secret")
                secret = encryption.new_disk_secret(hv, vm, target, op)
            report.phase("make volume")
            vol_xml = xml_volume.volume_xml(vol_name, capacity, disk_fmt, encryption_secret=secret)
            what = f"making volume {vol_name}"
            make = encryption.create_volume if secret is not None else hv_storage.Pool.create_volume
            volumes.created_with_undo(op, pool, vol_name, lambda: make(pool, vol_xml, what=what))
            faults.point("disk-volume")
            source = DiskSource(pool=pool.name, volume=vol_name)
        disk = DiskSpec(target=target, bus=bus, format=disk_fmt, source=source,  # type: ignore[arg-type]
                        readonly=readonly, encryption_secret=secret)
        if bus == "scsi" and not has_scsi_controller(dom.xml(inactive=True)):
            report.phase("add scsi controller")
            op.add("remove the scsi controller", undo_actions.remove_device(dom.uuid, vm, scsi_controller_xml(),
                                                                            dom.xml(inactive=True)))
            dom.attach_device(scsi_controller_xml())
        report.phase("attach")
        op.add(f"detach {target}", undo_actions.remove_device(dom.uuid, vm, disk_to_xml(disk), dom.xml(inactive=True)))
        dom.attach_device(disk_to_xml(disk))
        faults.point("disk-attach")
        if pool is not None and vol_name is not None:
            ref = f"{pool.name}/{vol_name}"

            def own(meta: KvmhubMeta) -> None:
                meta.owned_volumes.append(ref)
                if secret is not None:
                    meta.owned_secrets.append(secret)

            _update_meta(dom, own)
        op.success()
    return disk, live


def _find(spec: VMSpec, target: str) -> DiskSpec | None:
    return next((d for d in spec.disks if d.target == target), None)


def _wait_unplugged(dom: hv_domains.Domain, target: str) -> bool:
    deadline = time.monotonic() + UNPLUG_SECONDS
    while time.monotonic() < deadline:
        if not dom.is_active() or target not in disk_targets(dom.xml()):
            return True
        time.sleep(0.5)
    return False


def remove(
    hv: Hypervisor, vm: str, target: str, *, keep: bool = False, report: Reporter = QUIET
) -> tuple[DiskSpec, bool, list[str]]:
    """Detach disk ``target`` (live when the VM runs, and from the definition) and delete its volume if
    kvmhub made it for this VM, unless ``keep``. Returns (disk, live, deleted "pool/volume" refs).

    Raises NotFound for an unknown target, Conflict for the boot disk of a running VM, OperationTimeout
    when the guest does not release the disk (the volume is then kept).
    """
    dom = vms.get(hv, vm)
    live = dom.is_active()
    config = domain_from_xml(dom.xml(inactive=True))
    disk = _find(domain_from_xml(dom.xml()), target) if live else None
    disk = disk or _find(config, target)
    if disk is None:
        raise NotFound(f"VM {vm} has no disk {target!r}", hint=f"{{cmd:disk ls {vm}}} lists them",
                       code="disk.not_found")
    if live and (target == "vda" or disk.boot_order == 1):
        raise Conflict(
            f"cannot remove {target} from {vm} while it runs: it is the boot disk",
            hint=f"stop the VM first: {{cmd:stop {vm}}}",
        )
    src = disk.source
    ref = f"{src.pool}/{src.volume}" if src.pool and src.volume else None
    locks = [LockSpec("vm", vm)] + ([LockSpec("volume", ref)] if ref is not None else [])
    with Operation(hv, "disk.rm", vm, locks=locks, report=report) as op:
        deleted = _detach_and_delete(hv, dom, disk, ref, live, keep, op, report)
        op.success()
    return disk, live, deleted


def _detach_and_delete(hv: Hypervisor, dom: hv_domains.Domain, disk: DiskSpec, ref: str | None, live: bool,
                       keep: bool, op: Operation, report: Reporter) -> list[str]:
    vm, target, src = dom.name, disk.target, disk.source
    report.phase("detach")
    op.add(f"detach {target} from {vm}")  # a removal is not undone: the steps are journalled for `ops show`
    dom.detach_device(disk_to_xml(disk))
    if live and not _wait_unplugged(dom, target):
        raise OperationTimeout(
            f"the guest of {vm} has not released {target} within {UNPLUG_SECONDS:.0f} s",
            cause="hot-unplug needs the guest's cooperation (ACPI PCI hot-plug); it may be busy or not support it",
            hint="the disk is gone from the definition and leaves at the next shutdown; its volume is kept",
        )
    meta = domain_from_xml(dom.xml(inactive=True)).meta
    deleted: list[str] = []
    if ref is None or ref not in meta.owned_volumes:
        return deleted
    secret = disk.encryption_secret if disk.encryption_secret in meta.owned_secrets else None

    def disown(m: KvmhubMeta) -> None:
        if ref in m.owned_volumes:
            m.owned_volumes.remove(ref)
        if secret is not None and secret in m.owned_secrets:
            m.owned_secrets.remove(secret)

    if keep:
        _update_meta(dom, disown)
        if secret is not None:
            report.phase(f"volume {ref} kept; its key stays in libvirt secret {secret}")
        return deleted
    report.phase("delete volume")
    assert src.pool is not None and src.volume is not None
    below = bases.backing_path(hv, ref)
    op.add(f"delete volume {ref}")
    _delete_volume(hv_storage.lookup_pool(hv, src.pool), src.volume)
    deleted.append(ref)
    if secret is not None:
        op.add(f"delete the key of {ref}")
        encryption.delete_secret(hv, secret)
    _update_meta(dom, disown)
    if below is not None:
        deleted += bases.release_bases(hv, [below], report)  # a frozen base no other disk sits on any more
    return deleted


def _volume_of(hv: Hypervisor, src: DiskSource) -> hv_storage.Volume | None:
    if src.pool is not None and src.volume is not None:
        return hv_storage.lookup_pool(hv, src.pool).volume(src.volume)
    if src.path is not None:
        return hv_storage.volume_by_path(hv, src.path)
    return None


def resize(hv: Hypervisor, vm: str, target: str, size: str, *, report: Reporter = QUIET) -> tuple[int, int, bool]:
    """Grow disk ``target`` to ``size``: live through QEMU when the VM runs (the guest sees it at once),
    else the volume itself. Returns (old bytes, new bytes, live).

    Raises InvalidInput for shrinking, a network or read-only disk or a CD-ROM; HostProblem when the pool
    lacks the space; NotFound for an unknown target.
    """
    dom = vms.get(hv, vm)
    new = parse_size(size, what="disk size", default_unit="G")
    new = -(-new // 512) * 512  # QEMU sizes disks in whole sectors
    live = dom.is_active()
    disk = _find(domain_from_xml(dom.xml()), target)
    if disk is None:
        raise NotFound(f"VM {vm} has no disk {target!r}", hint=f"{{cmd:disk ls {vm}}} lists them",
                       code="disk.not_found")
    if disk.device == "cdrom" or disk.readonly:
        raise InvalidInput(f"{target} of {vm} is {'a CD-ROM' if disk.device == 'cdrom' else 'read-only'}",
                           cause="only writable disks can grow")
    if disk.source.protocol is not None:
        raise InvalidInput(
            f"cannot resize {target} of {vm}: it is a network disk ({source_text(disk.source)})",
            cause="its size is the export's, set on the server that serves it",
            hint="grow the file or LUN on the server; the VM sees the new size at its next start",
        )
    vol = _volume_of(hv, disk.source)
    if live:
        old = hv_blocks.block_info(dom, target).capacity
    elif vol is not None:
        old = vol.info().capacity
    else:
        raise InvalidInput(
            f"cannot resize {target} of {vm} while it is shut off: {source_text(disk.source)} is in no storage pool",
            hint=f"start the VM ({{cmd:start {vm}}}) and resize it live",
        )
    if new < old:
        raise InvalidInput(
            f"cannot shrink {target} of {vm} from {format_size(old)} to {format_size(new)}",
            cause="shrinking a disk cuts off the data at its end (and the guest's file systems with it)",
            hint=f"give a size of at least {format_size(old)}",
        )
    if new == old:
        return old, new, live
    if vol is not None:
        available = hv_blocks.pool_available(hv_storage.lookup_pool(hv, vol.pool))
        if new - old > available:
            vinfo = vol.info()
            # a sparse qcow2 takes room only as the guest writes; raw files and preallocated ones take it now
            full = (xml_volume.volume_from_xml(vol.xml()).format or "raw") == "raw" or vinfo.allocation >= old
            if full:
                raise HostProblem(
                    f"not enough space in pool {vol.pool} to grow {target} of {vm} by {format_size(new - old)}",
                    cause=f"the pool has {format_size(available)} free",
                    hint="free space in the pool, or grow the disk less",
                )
            report.warn(f"pool {vol.pool} has {format_size(available)} free, less than the "
                f"{format_size(new - old)} {target} grows by; it fills as the guest writes")
    project = projects.project_of(domain_from_xml(dom.xml(inactive=True)).meta)
    locks = [LockSpec("vm", vm), projects.lock(project)]
    locks += [LockSpec("volume", f"{vol.pool}/{vol.name}")] if vol is not None else []
    with Operation(hv, "disk.resize", f"{vm}/{target}", locks=locks, report=report) as op:
        projects.check(hv, project, ProjectUse(disk=new - old))
        op.phase("resize")
        op.add(f"grow {target} of {vm} from {old} to {new} bytes")  # a disk that grew stays grown
        if live:
            hv_blocks.block_resize(dom, target, new)
        else:
            assert vol is not None
            vol.resize(new)
        op.success()
    return old, new, live


def _sizes(hv: Hypervisor, dom: hv_domains.Domain, disk: DiskSpec, live: bool) -> tuple[int | None, int | None]:
    try:
        if live and disk.device == "disk":
            info = hv_blocks.block_info(dom, disk.target)
            return info.capacity, info.allocation
        vol = _volume_of(hv, disk.source)
        if vol is not None:
            vinfo = vol.info()
            return vinfo.capacity, vinfo.allocation
    except KvmhubError:
        pass  # an empty CD-ROM drive or a volume gone missing: sizes unknown
    return None, None


def list_disks(hv: Hypervisor, vm: str) -> list[DiskInfo]:
    """The VM's disks (as they are now when it runs), with sizes where libvirt knows them."""
    dom = vms.get(hv, vm)
    live = dom.is_active()
    spec = domain_from_xml(dom.xml())
    owned = set(domain_from_xml(dom.xml(inactive=True)).meta.owned_volumes) if live else set(spec.meta.owned_volumes)
    out = []
    for d in spec.disks:
        capacity, allocation = _sizes(hv, dom, d, live)
        src = d.source
        out.append(DiskInfo(
            target=d.target, bus=d.bus, device=d.device, source=source_text(src), format=d.format,
            capacity=capacity, allocation=allocation, readonly=d.readonly,
            owned=f"{src.pool}/{src.volume}" in owned, encrypted=d.encryption_secret is not None,
        ))
    return out
