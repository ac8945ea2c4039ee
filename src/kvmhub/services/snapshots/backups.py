"""Backups through libvirt's backup API: full and incremental (qcow2 dirty bitmaps), listed, verified, restored.

A backup directory holds one chain per VM: ``0001-full-vda.qcow2``, ``0002-incremental-vda.qcow2``, ... and
``kvmhub-backup.json`` (the manifest: each point's checkpoint, parent, checksums, and the VM definition).
Each backup is a push-mode job with a new checkpoint; an incremental one copies only the clusters changed
since the checkpoint of the previous point. After the job its file is made an overlay of the previous
point's file (a relative backing name), so any point reads as the whole disk at that time and restoring it
is one ``qemu-img convert``. Read-only and non-disk devices (the cloud-init seed) are left out.

The directory is a path on the libvirt host, which must be the machine kvmhub runs on (or a test host).

A backup directory is untrusted on restore: its manifest may name only plain file names in it, each
file's backing chain must stay among the manifest's files, and a VM restored as new gets the recorded
definition with a new identity (:mod:`kvmhub.xml.rewrite`) only if it holds nothing kvmhub's backup of a
kvmhub VM would not (:func:`kvmhub.xml.hostbound.untrusted_refusals`; an emulated TPM starts empty).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kvmhub import faults
from kvmhub.errors import Conflict, HostProblem, InvalidInput, NotFound, OperationFailed
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import backup as hv_backup
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import saves as hv_saves
from kvmhub.hv import snapshots as hv_snap
from kvmhub.hv import storage as hv_storage
from kvmhub.models.backup import (
    BackupDisk,
    BackupInfo,
    BackupKind,
    BackupManifest,
    BackupPoint,
    BackupRequest,
    RestoreRequest,
)
from kvmhub.models.vm import DiskSource
from kvmhub.ops.actions import StepLog
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import undo_actions
from kvmhub.services.network import leases
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.storage import nvram as nvram_files
from kvmhub.services.vm.lookup import get as get_vm
from kvmhub.tools import qemu_img
from kvmhub.validate import check_name
from kvmhub.xml import backup as xml_backup
from kvmhub.xml import snapshot as xml_snap
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse, serialize
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.hostbound import untrusted_refusals
from kvmhub.xml.metadata import metadata_from_xml, metadata_to_xml
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_tree, source_key

MANIFEST = "kvmhub-backup.json"
CHECKPOINT_PREFIX = "kvmhub-backup-"


# -- the backup directory ---------------------------------------------------------------------------------


def local_dir(hv: Hypervisor, directory: str) -> Path:
    """The backup directory (a host path) as seen from here. Raises HostProblem for a remote host."""
    if not os.path.isabs(directory):
        raise InvalidInput(f"the backup directory must be an absolute path on the host, not {directory!r}")
    if not host_files_here(hv.uri):
        raise HostProblem(f"backups need the VM's host to be this machine; {hv.uri} is remote",
                          hint="run kvmhub on the VM's host (`kvmhub --connect qemu:///system ...` there)")
    return Path(host_root() + os.path.normpath(directory))


def load_manifest(where: Path) -> BackupManifest | None:
    """The manifest of a backup directory (None when it holds no kvmhub backup)."""
    path = where / MANIFEST
    if not path.exists():
        return None
    try:
        return BackupManifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise OperationFailed(f"{path} is not a kvmhub backup manifest", original=str(exc)) from None


def _store_manifest(where: Path, manifest: BackupManifest) -> None:
    tmp = where / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, where / MANIFEST)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _backed_up_disks(dom: hv_domains.Domain) -> tuple[list[str], list[str]]:
    """(targets to back up, targets left out): writable qcow2 disks are backed up, read-only ones are not."""
    keep: list[str] = []
    skip: list[str] = []
    for disk in xml_snap.domain_disks(dom.xml()):
        if disk.device != "disk" or disk.readonly or disk.source is None:
            skip.append(disk.target)
        elif disk.format != "qcow2":
            raise Conflict(f"disk {disk.target} of {dom.name} is {disk.format}",
                           cause="incremental backups track changes in qcow2 dirty bitmaps",
                           hint="convert the disk to qcow2 (`qemu-img convert -O qcow2`) and redefine the VM")
        else:
            keep.append(disk.target)
    if not keep:
        raise Conflict(f"VM {dom.name} has no writable disk to back up")
    return keep, skip


def _ensure_bitmap_capable(hv: Hypervisor, dom: hv_domains.Domain, targets: list[str], *, running: bool,
                           report: Reporter) -> None:
    """Dirty bitmaps need qcow2 v3 (compat 1.1): upgrade v2 disks of a shut-off VM, refuse them on a running one."""
    paths = {d.target: _disk_path(hv, d.source) for d in xml_snap.domain_disks(dom.xml())
             if d.target in targets and d.source is not None}
    for target, path in paths.items():
        seen = host_root() + path
        data = json.loads(qemu_img.run(["info", "-U", "--output=json", "-f", "qcow2", seen],
                                       what=f"reading disk {target} of {dom.name}", cpu=30))
        compat = ((data.get("format-specific") or {}).get("data") or {}).get("compat")
        if compat != "0.10":
            continue
        if running:
            raise Conflict(
                f"disk {target} of {dom.name} is a qcow2 v2 file ({path}), which cannot hold dirty bitmaps",
                cause="checkpoints, and so incremental backups, need qcow2 v3 (compat 1.1)",
                hint=f"upgrade it once while the VM is off: {{cmd:stop {dom.name}}}, then "
                     f"{{cmd:backup {dom.name} --to DIR}} upgrades it (or `qemu-img amend -f qcow2 -o compat=1.1 "
                     f"{path}`)",
            )
        report.phase(f"upgrading disk {target} to qcow2 v3 (dirty bitmaps need it)")
        qemu_img.run(["amend", "-f", "qcow2", "-o", "compat=1.1", seen], what=f"upgrading disk {target}", cpu=300)


def _disk_path(hv: Hypervisor, source: DiskSource) -> str:
    if source.pool and source.volume:
        return hv_storage.lookup_pool(hv, source.pool).volume(source.volume).path
    return source.path or ""


def _info(vm: str, directory: str, point: BackupPoint, present: set[str]) -> BackupInfo:
    return BackupInfo(vm=vm, directory=directory, name=point.name, kind=point.kind, parent=point.parent,
                      checkpoint=point.checkpoint, checkpoint_present=point.checkpoint in present,
                      created=point.created, bytes=sum(d.bytes for d in point.disks), duration_s=point.duration_s)


# -- backup -----------------------------------------------------------------------------------------------


def backup(
    hv: Hypervisor,
    req: BackupRequest,
    *,
    report: Reporter = QUIET,
) -> BackupInfo:
    """Back up VM ``req.vm`` into ``req.directory``: a full backup, or with ``req.incremental`` the changes since
    the last one.

    Works on a running VM (a shut-off one is started paused for the job and stopped after). Raises Conflict
    when an incremental backup has nothing to follow, or the directory holds another VM's backups.
    """
    name, directory, incremental = req.vm, req.directory, req.incremental
    dom = get_vm(hv, name)
    where = local_dir(hv, directory)
    state = dom.state()
    if state not in ("running", "paused", "shut off"):
        raise Conflict(f"cannot back up VM {name}: it is {state}", hint="wait until it is running or shut off",
                       code="vm.wrong_state")
    manifest = load_manifest(where) or BackupManifest(vm=name, uuid=dom.uuid)
    if manifest.uuid != dom.uuid:
        raise Conflict(f"{directory} holds backups of another VM ({manifest.vm}, UUID {manifest.uuid})",
                       hint="back up into a directory of its own")
    parent = manifest.points[-1] if manifest.points else None
    if incremental:
        if parent is None:
            raise Conflict(f"{directory} holds no backup of {name} to build an incremental one on",
                           hint=f"take a full one first: {{cmd:backup {name} --to {directory}}}")
        if parent.checkpoint not in {c.name for c in hv_backup.checkpoints(dom)}:
            raise Conflict(f"VM {name} no longer has checkpoint {parent.checkpoint} of backup {parent.name}",
                           cause="the checkpoint was removed (or the disk restored), so its changes are unknown",
                           hint=f"take a full backup: {{cmd:backup {name} --to {directory}}}")
    keep, skip = _backed_up_disks(dom)
    _ensure_bitmap_capable(hv, dom, keep, running=state != "shut off", report=report)
    kind: BackupKind = "incremental" if incremental else "full"
    point_name = f"{len(manifest.points) + 1:04d}"
    files = {t: where / f"{point_name}-{kind}-{t}.qcow2" for t in keep}
    if taken := [str(f) for f in files.values() if f.exists()]:
        raise Conflict(f"{', '.join(taken)} already exist", hint="remove stray files from the backup directory")
    where.mkdir(parents=True, exist_ok=True)
    checkpoint = f"{CHECKPOINT_PREFIX}{point_name}-{uuid.uuid4().hex[:8]}"
    description = json.dumps({"kvmhub-backup": directory, "point": point_name})
    backup_xml = xml_backup.backup_to_xml({t: os.path.join(directory, f.name) for t, f in files.items()}, skip,
                                          incremental=parent.checkpoint if incremental and parent else None)
    checkpoint_xml = xml_backup.checkpoint_to_xml(checkpoint, keep, skip, description=description)
    began = time.monotonic()
    with Operation(hv, "vm.backup", name, locks=[LockSpec("vm", name)], report=report) as op:
        for f in files.values():
            op.add(f"remove {f.name}", undo_actions.remove_file(str(f), seen_here=True))
        _run_job(dom, state, backup_xml, checkpoint_xml, checkpoint, op, report)
        faults.point("backup-copied")
        report.phase("recording checksums")
        disks = []
        for target, path in files.items():
            if incremental and parent is not None:
                base = next(d.file for d in parent.disks if d.target == target)
                qemu_img.run(["rebase", "-u", "-f", "qcow2", "-b", base, "-F", "qcow2", str(path)],
                             what=f"linking {path.name} to {base}")
            size = int(qemu_img.info(path, "qcow2").get("virtual-size", 0))
            disks.append(BackupDisk(target=target, file=path.name, capacity=size, bytes=path.stat().st_size,
                                    sha256=_sha256(path)))
        point = BackupPoint(
            name=point_name, kind=kind, parent=parent.name if incremental and parent else None,
            checkpoint=checkpoint, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - began, 2), disks=disks, domain_xml=dom.xml(inactive=True),
        )
        manifest.points.append(point)
        _store_manifest(where, manifest)
        op.success()
    return _info(name, directory, point, {checkpoint})


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _run_job(
    dom: hv_domains.Domain, state: str, backup_xml: str, checkpoint_xml: str, checkpoint: str, op: Operation,
    report: Reporter,
) -> None:
    started = state == "shut off"
    if started:
        report.phase("starting the VM paused for the backup (its CPUs do not run)")
        op.add("stop the VM started for the backup", undo_actions.destroy_domain(dom.uuid, dom.name,
                                                                                 only_paused=True))
        hv_snap.start_paused(dom)
        faults.point("backup-started-paused")
    try:
        report.phase("starting the backup job")
        op.add(f"delete checkpoint {checkpoint}", undo_actions.delete_checkpoint(dom.uuid, checkpoint))
        hv_backup.begin(dom, backup_xml, checkpoint_xml)
        faults.point("backup-job")
        report.phase("copying the disks")
        try:
            hv_backup.wait(dom, progress=lambda done, total: op.progress("copying the disks", done, total))
        except BaseException:
            hv_backup.abort(dom)
            raise
    finally:
        if started and dom.is_active():
            dom.destroy()  # SIGTERM first: QEMU writes the dirty bitmaps into the qcow2 as it exits


# -- list, verify -----------------------------------------------------------------------------------------


def list_backups(hv: Hypervisor, name: str, directory: str | None = None) -> list[BackupInfo]:
    """The backup points of VM `name`: in `directory`, or in every directory its checkpoints name."""
    dom = get_vm(hv, name)
    present: set[str] = set()
    dirs: list[str] = [directory] if directory else []
    for cp in hv_backup.checkpoints(dom):
        present.add(cp.name)
        info = xml_backup.checkpoint_from_xml(cp.xml())
        try:
            where = json.loads(info.description or "{}").get("kvmhub-backup")
        except ValueError:
            where = None
        if isinstance(where, str) and where not in dirs and directory is None:
            dirs.append(where)
    out: list[BackupInfo] = []
    for d in dirs:
        manifest = load_manifest(local_dir(hv, d))
        if manifest is None or manifest.uuid != dom.uuid:
            continue
        out += [_info(name, d, p, present) for p in manifest.points]
    return sorted(out, key=lambda i: (i.created, i.directory, i.name))


def verify(hv: Hypervisor, directory: str, *, report: Reporter = QUIET) -> list[str]:
    """Check every file of a backup directory (checksum + ``qemu-img check``); returns the problems found."""
    where = local_dir(hv, directory)
    manifest = load_manifest(where)
    if manifest is None:
        raise NotFound(f"{directory} holds no kvmhub backup", cause=f"there is no {MANIFEST} in it",
                       code="backup.not_found")
    problems: list[str] = []
    for point in manifest.points:
        for disk in point.disks:
            path = where / disk.file
            report.phase(f"checking {disk.file}")
            if not path.exists():
                problems.append(f"{disk.file}: missing")
                continue
            if _sha256(path) != disk.sha256:
                problems.append(f"{disk.file}: checksum differs from the one recorded at backup time")
            try:
                qemu_img.run(["check", "-f", "qcow2", str(path)], what=f"checking {disk.file}", cpu=600)
            except (OperationFailed, HostProblem) as exc:
                problems.append(f"{disk.file}: qemu-img check: {exc.original or exc.message}")
    return problems


def chain_of(manifest: BackupManifest, at: str | None) -> list[BackupPoint]:
    """The points from the full backup up to `at` (default: the latest). Raises NotFound for an unknown point."""
    if not manifest.points:
        raise NotFound("the backup directory holds no backup point", code="backup.not_found")
    by_name = {p.name: p for p in manifest.points}
    key = at or manifest.points[-1].name
    if key.isdigit():
        key = f"{int(key):04d}"
    if key not in by_name:
        raise NotFound(f"no backup point {at!r}", hint="list them: {cmd:backup ls NAME --dir DIR}",
                       code="backup.not_found")
    chain = [by_name[key]]
    while chain[-1].parent is not None:
        chain.append(by_name[chain[-1].parent])
    return list(reversed(chain))


# -- restore ----------------------------------------------------------------------------------------------


def upload_volume(pool: hv_storage.Pool, vol_name: str, src: Path, undo: StepLog,
                  progress: Callable[[int, int], None] | None = None) -> hv_storage.Volume:
    """A new volume `vol_name` in `pool` holding the bytes of the local qcow2 `src` (deleted on undo)."""
    if pool.has_volume(vol_name):
        raise Conflict(f"pool {pool.name} already has a volume {vol_name}", hint="remove it, or pick another name")
    length = src.stat().st_size
    # the uploaded bytes replace the file whole; libvirt re-reads the qcow2 header on refresh
    undo.add(f"delete volume {pool.name}/{vol_name}", undo_actions.delete_volume(pool.name, vol_name))
    vol = pool.create_volume(xml_volume.volume_xml(vol_name, length, "raw"), what=f"creating volume {vol_name}")
    undo.made(key=vol.path)
    with open(src, "rb") as fh:
        vol.upload(fh, length, (lambda n: progress(n, length)) if progress else None)
    pool.refresh()
    return pool.volume(vol_name)


def _free_name(pool: hv_storage.Pool, stem: str) -> str:
    taken = set(pool.volume_names())
    n = 1
    while (name := f"{stem}{'' if n == 1 else f'-{n}'}.qcow2") in taken:
        n += 1
    return name


def restore(hv: Hypervisor, req: RestoreRequest, *, report: Reporter = QUIET) -> str:
    """Rebuild VM ``req.vm``'s disks from the backups in ``req.directory`` as of point ``req.at`` (default: latest).

    In place the VM must be shut off: its backed-up disks are replaced (the old files deleted when kvmhub
    made them), its checkpoints and any saved state dropped. With `as_name` a new VM is defined beside it.
    Returns the name of the restored VM. Raises Conflict for a running VM or a taken name.
    """
    name, directory, at, as_name, pool = req.vm, req.directory, req.at, req.as_name, req.pool
    where = local_dir(hv, directory)
    manifest = load_manifest(where)
    if manifest is None:
        raise NotFound(f"{directory} holds no kvmhub backup", cause=f"there is no {MANIFEST} in it",
                       code="backup.not_found")
    chain = chain_of(manifest, at)
    point = chain[-1]
    _check_files(where, directory, manifest, chain)
    dom = None
    if as_name is None:
        dom = get_vm(hv, name)
        if dom.uuid != manifest.uuid:
            raise Conflict(f"{directory} holds backups of another VM ({manifest.vm}, UUID {manifest.uuid})",
                           hint=f"restore it as a new VM: {{cmd:backup restore {name} --from {directory} "
                                "--as NEWNAME}")
        if (state := dom.state()) != "shut off":
            raise Conflict(f"cannot restore a backup onto VM {name}: it is {state}",
                           cause="the disks would change under the running guest and corrupt its file systems",
                           hint=f"stop it first ({{cmd:stop {name}}}), or restore beside it with {{opt:as}} NEWNAME",
                           code="vm.wrong_state")
    else:
        check_name(as_name)
        if hv_domains.exists(hv, as_name):
            raise Conflict(f"a VM named {as_name!r} already exists", hint="pick another {opt:as} name",
                           code="name.taken")
        if ties := untrusted_refusals(parse(point.domain_xml, "domain"), allow_tpm_emulator=True):
            raise _unsafe(directory, "its recorded definition has " + "; ".join(f"{t.what} ({t.why})" for t in ties))
    target_pool = hv_storage.lookup_pool(hv, pool) if pool else pools.disks_pool(hv)
    new_name = as_name or name
    report.phase(f"restoring point {point.name} ({point.kind}, {point.created})")
    locks = [LockSpec("vm", new_name)] + ([LockSpec("vm", name)] if as_name else [])
    with Operation(hv, "vm.restore", new_name, locks=locks, report=report) as undo:
        if as_name is not None and hv_domains.exists(hv, as_name):  # again under the lock
            raise Conflict(f"a VM named {as_name!r} already exists", hint="pick another {opt:as} name",
                           code="name.taken")
        made: dict[str, hv_storage.Volume] = {}
        for disk in point.disks:
            flat = where / f".restore-{uuid.uuid4().hex[:8]}-{disk.target}.qcow2"
            undo.add(f"remove {flat.name}", undo_actions.remove_file(str(flat), seen_here=True))
            report.phase(f"rebuilding disk {disk.target} from {point.name} and its parents")
            qemu_img.run(["convert", "-f", "qcow2", "-O", "qcow2", str(where / disk.file), str(flat)],
                         what=f"rebuilding {disk.target} from {disk.file}", cpu=3600)
            vol_name = _free_name(target_pool, f"{new_name}-{disk.target}.restored-{point.name}" if dom
                                  else f"{new_name}-{disk.target}")
            report.phase(f"uploading disk {disk.target} into {target_pool.name}/{vol_name}")
            made[disk.target] = upload_volume(target_pool, vol_name, flat, undo,
                                              functools.partial(undo.progress, f"uploading {disk.target}"))
            flat.unlink()
            faults.point("restore-disk")
        if dom is None:
            _define_copy(hv, point.domain_xml, new_name, made, undo, report)
        else:
            _replace_disks(hv, dom, made, report)
        undo.success()
    return new_name


def _unsafe(directory: str, why: str) -> InvalidInput:
    return InvalidInput(f"{directory} is not a safe kvmhub backup: {why}",
                        cause="the backup directory was changed by hand or by someone attacking this host",
                        hint="restore from a backup directory only kvmhub has written")


def _check_files(where: Path, directory: str, manifest: BackupManifest, chain: list[BackupPoint]) -> None:
    """Every file of `chain` a plain name in the directory, backed only by files the manifest names there."""
    known = {d.file for p in manifest.points for d in p.disks}
    for name in known:
        if not name or name != os.path.basename(name) or name in (".", "..") or "\\" in name:
            raise _unsafe(directory, f"its manifest names the file {name!r}, which is not a plain file name")
    top = where.resolve()
    for disk in chain[-1].disks:
        data = json.loads(qemu_img.run(["info", "--backing-chain", "--output=json", "-f", "qcow2",
                                        str(where / disk.file)], what=f"reading {disk.file}", cpu=60))
        for n, layer in enumerate(data if isinstance(data, list) else [data]):
            file = Path(str(layer.get("filename", ""))).resolve()
            if file.parent != top or file.name not in known:
                raise _unsafe(directory, f"the backing chain of {disk.file} reaches {layer.get('filename')}, "
                                         "outside the backup's own files")
            if n and layer.get("format") != "qcow2":
                raise _unsafe(directory, f"{layer.get('filename')} in the chain of {disk.file} is not qcow2")
            if ((layer.get("format-specific") or {}).get("data") or {}).get("data-file"):
                raise _unsafe(directory, f"{layer.get('filename')} has an external data file")


def _define_copy(hv: Hypervisor, domain_xml: str, new_name: str, made: dict[str, hv_storage.Volume],
                 undo: StepLog, report: Reporter = QUIET) -> None:
    """The recorded definition as VM `new_name`: new identity, the restored disks; the old VM's own media
    (its seed, ISO) left out, since they go when it is removed."""
    tree = parse(domain_xml, "domain")
    old_meta = domain_from_xml(domain_xml).meta
    sources: dict[str, NewSource] = {}
    devices = tree.find("devices")
    for disk in list(devices.iterfind("disk")) if devices is not None else []:
        target = disk.find("target")
        key, dev = source_key(disk), target.get("dev") if target is not None else None
        if key is not None and dev in made:
            sources[key] = NewSource(pool=made[dev].pool, volume=made[dev].name, format="qcow2")
        elif key is not None and key in old_meta.owned_volumes and devices is not None:
            devices.remove(disk)
    nvram = None
    if nvram_files.nvram_path(tree) is not None:
        nvram = nvram_files.new_path(new_name)
        report.warn("a backup holds no NVRAM (UEFI variables); the new VM's starts from the firmware template")
    meta = old_meta.model_copy(update={"owned_volumes": [f"{v.pool}/{v.name}" for v in made.values()],
                                       "owned_secrets": [], "owned_files": [], "forwards": []})
    macs = [leases.new_mac(hv) for _ in tree.iterfind("devices/interface")]
    serial = domain_from_xml(domain_xml).serial
    log_dir = os.path.dirname(serial.log_file) if serial and serial.log_file else "/var/log/libvirt/qemu"
    new_uuid = str(uuid.uuid4())  # known before the definition exists, so its undo names exactly this domain
    rewrite_tree(tree, Rewrite(name=new_name, uuid=new_uuid, mac=lambda n, _old: macs[n], disks=sources,
                               serial_log=os.path.join(log_dir, f"{new_name}-serial.log"), nvram=nvram, meta=meta))
    undo.add(f"remove the definition of {new_name}", undo_actions.undefine_domain(new_uuid, new_name))
    hv_domains.define(hv, serialize(tree))


def _replace_disks(hv: Hypervisor, dom: hv_domains.Domain, made: dict[str, hv_storage.Volume],
                   report: Reporter) -> None:
    inactive = dom.xml(inactive=True)
    old = {d.target: d.source for d in xml_snap.domain_disks(inactive) if d.target in made and d.source}
    hv_domains.define(hv, xml_snap.retarget_domain_disks(inactive, {t: v.path for t, v in made.items()}))
    for cp in hv_backup.checkpoints(dom):
        cp.delete(metadata_only=True)  # their bitmaps lived in the replaced files
    if hv_saves.has_managed_save(dom):
        report.warn("discarding the VM's saved memory state: it belongs to the replaced disks")
        hv_saves.remove_managed_save(dom)
    text = dom.metadata()
    meta = metadata_from_xml(text) if text else None
    gone = [f"{s.pool}/{s.volume}" for s in old.values() if s.pool and s.volume]
    if meta is not None:
        owned = [v for v in meta.owned_volumes if v not in gone] + [f"{v.pool}/{v.name}" for v in made.values()]
        dom.set_metadata(metadata_to_xml(meta.model_copy(update={"owned_volumes": owned})))
    for ref in gone:
        if meta is None or ref not in meta.owned_volumes:
            continue
        pool_name, _, vol = ref.partition("/")
        report.phase(f"deleting the replaced disk {ref}")
        hv_storage.lookup_pool(hv, pool_name).volume(vol).delete()
