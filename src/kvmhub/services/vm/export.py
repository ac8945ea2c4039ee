"""Export and import: a VM as one compressed file, brought back on this host or another one.

The archive is a gzip-compressed tar holding, in this order:

* ``kvmhub-export.json``: the manifest (format version, the VM's inactive domain definition with its
  kvmhub metadata, and each disk's file name, format, sizes and sha256);
* ``disk-<target>.qcow2``: each qcow2 disk **flattened**: its whole backing chain (the image a linked clone
  came from included) merged into one self-contained file, so the archive needs nothing on the other host
  (``compress``: with zlib-compressed clusters, which stay compressed in the imported volume);
* ``disk-<target>.raw``: raw disks (the cloud-init seed) byte for byte;
* ``nvram.fd``: a UEFI VM's NVRAM file (its firmware variables), when its host is this machine;
* ``tpm/<path>``: an emulated TPM's swtpm state files (its keys and sealed secrets), when its host is this
  machine and the VM has run (:mod:`kvmhub.services.vm.export_tpm`).

Disks are read through libvirt's volume download API and written through its upload API, so the archive
is a file where kvmhub runs, whichever host the VM is on. Only the VM's current state travels: snapshots,
checkpoints and saved memory state do not. The VM must be shut off (its disks must not change while
copied); a VM with an encrypted disk is refused (its key is a private libvirt secret), and so is one with
a PCI/USB host device or TPM passthrough (hardware of this host). An export is
written to ``FILE.partial`` and renamed at the end, so an interrupted one never leaves a file under the
final name.

An archive is untrusted input: import reads only the members the manifest names (regular files, no links,
no paths), checks every disk's checksum and with ``qemu-img info`` that it refers to no other file, and
refuses a definition holding anything kvmhub's export does not write (network disks, secrets, host
devices, host bridges or macvtap NICs, shares, host files: :func:`kvmhub.xml.hostbound.untrusted_refusals`).
The definition is then the archived one with its identity changed in place (:mod:`kvmhub.xml.rewrite`):
disks point only at the new volumes, the serial log and NVRAM get the new VM's names, port forwards are
dropped and kvmhub metadata owns exactly what the import made.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import itertools
import os
import re
import tarfile
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import saves as hv_saves
from kvmhub.hv import snapshots as hv_snap
from kvmhub.hv import storage as hv_storage
from kvmhub.models.export import ExportDisk, ExportManifest, ExportNvram
from kvmhub.models.project import ProjectUse
from kvmhub.models.requests_vm import ExportResult, ImportRequest
from kvmhub.models.vm import VMSpec
from kvmhub.ops.actions import StepLog
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, BytesFn, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.host import accel
from kvmhub.services.network import leases
from kvmhub.services.snapshots.backups import upload_volume
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.storage import nvram as nvram_files
from kvmhub.services.storage.media import media_path
from kvmhub.services.vm import export_tpm
from kvmhub.services.vm.lifecycle import get as get_vm
from kvmhub.tools import qemu_img
from kvmhub.validate import check_name
from kvmhub.xml import snapshot as xml_snap
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse, serialize
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.hostbound import unexportable, untrusted_refusals
from kvmhub.xml.network import network_subnet_from_xml
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_tree, source_key

MANIFEST = "kvmhub-export.json"
MANIFEST_LIMIT = 16 * 1024**2
SERIAL_LOG_DIR = "/var/log/libvirt/qemu"
MAX_CHAIN = 32
CHUNK = 4 * 1024**2
# (what is being moved, bytes done, bytes in all): one bar per phase in the CLI


# -- export -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    target: str
    format: Literal["qcow2", "raw"]
    chain: list[tuple[hv_storage.Volume, str]]  # top first: (volume, its format)


def _volume_at(hv: Hypervisor, path: str, what: str) -> hv_storage.Volume:
    vol = hv_storage.volume_by_path(hv, path)
    if vol is None:
        raise NotFound(f"{what} ({path}) is in no libvirt storage pool, so libvirt cannot read it for the export",
                       hint=f"define a dir pool for {os.path.dirname(path)} "
                            f"(`virsh pool-define-as NAME dir --target {os.path.dirname(path)}`, then pool-start)")
    return vol


def _sources(hv: Hypervisor, dom: hv_domains.Domain) -> list[_Source]:
    """Every disk to export with its backing chain, checked before anything is written."""
    xml = dom.xml(inactive=True)
    encrypted = [d.target for d in domain_from_xml(xml).disks if d.encryption_secret is not None]
    if encrypted:
        raise Conflict(f"cannot export VM {dom.name}: disk {', '.join(encrypted)} is encrypted",
                       cause="its key is a private libvirt secret kvmhub cannot read back, so the disk can neither "
                             "be flattened into the archive nor opened on the other host",
                       hint="copy the data from inside the guest (e.g. over ssh) to a VM with plain disks, "
                            "and export that one")
    if ties := unexportable(parse(xml, "domain")):
        raise Conflict(f"cannot export VM {dom.name}: it has {', '.join(t.what for t in ties)}",
                       cause="; ".join(f"{t.what}: {t.why}" for t in ties) + "; none of it can travel in an archive",
                       hint=f"remove it from the VM (`virsh edit {dom.name}`, or `virt-xml {dom.name} --remove-device "
                            "--hostdev all` / `--tpm all`), export, and add it again on the new host")
    out: list[_Source] = []
    for disk in xml_snap.domain_disks(xml):
        if disk.source is None:
            continue  # an empty CD-ROM drive
        if disk.format not in ("qcow2", "raw"):
            raise Conflict(f"disk {disk.target} of {dom.name} is {disk.format or 'of no stated format'}; kvmhub "
                           "exports qcow2 and raw disks",
                           hint="convert it with `qemu-img convert -O qcow2` and redefine the VM")
        fmt: Literal["qcow2", "raw"] = "qcow2" if disk.format == "qcow2" else "raw"
        src = disk.source
        if src.pool and src.volume:
            top = hv_storage.lookup_pool(hv, src.pool).volume(src.volume)
        else:
            top = _volume_at(hv, src.path or "", f"disk {disk.target}")
        chain: list[tuple[hv_storage.Volume, str]] = [(top, fmt)]
        while True:
            facts = xml_volume.volume_from_xml(chain[-1][0].xml())
            if facts.backing_path is None:
                break
            if len(chain) >= MAX_CHAIN:
                raise Conflict(f"disk {disk.target} of {dom.name} has a backing chain over {MAX_CHAIN} files deep")
            base = _volume_at(hv, facts.backing_path, f"the backing file of disk {disk.target}")
            chain.append((base, facts.backing_format or "qcow2"))
        out.append(_Source(disk.target, fmt, chain))
    if not out:
        raise Conflict(f"VM {dom.name} has no disk to export")
    return out


def _flatten(src: _Source, work: Path, report: Reporter, progress: BytesFn, compress: bool = False) -> tuple[Path, int]:
    """Download the disk's chain through libvirt and merge it into one file (its clusters zlib-compressed
    with `compress`); returns (file, capacity)."""
    local: list[Path] = []
    for n, (vol, _fmt) in enumerate(src.chain):
        path = work / f"{src.target}.{n}"
        total = max(vol.info().allocation, 1)
        label = f"reading {src.target}" + (f" (backing file {vol.name})" if n else f" ({vol.name})")
        with open(path, "wb") as fh:
            vol.download(fh, functools.partial(_bytes_of, progress, label, total))
        local.append(path)
    capacity = src.chain[0][0].info().capacity
    if src.format == "raw":
        return local[0], capacity
    # the downloaded files are ours (read from the VM's host); chain them locally, then merge
    for (upper, lower), (_vol, fmt) in zip(itertools.pairwise(local), src.chain[1:], strict=True):
        qemu_img.run(["rebase", "-u", "-f", "qcow2", "-b", str(lower), "-F", fmt, str(upper)],
                     what=f"linking the copy of disk {src.target} to its backing file")
    flat = work / f"disk-{src.target}.qcow2"
    report.phase(f"flattening disk {src.target} (merging {len(local)} files" + (", compressing)" if compress else ")"))
    qemu_img.run(["convert", *(["-c"] if compress else []), "-f", "qcow2", "-O", "qcow2", str(local[0]), str(flat)],
                 what=f"flattening disk {src.target}", cpu=3600)
    for path in local:
        path.unlink()
    return flat, capacity


def _bytes_of(progress: BytesFn, label: str, total: int, done: int) -> None:
    progress(label, done, max(done, total))


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class _Reader(io.RawIOBase):
    """A file read for the tar writer, reporting bytes as they go."""

    def __init__(self, fh: IO[bytes], report: Callable[[int], None]) -> None:
        self._fh = fh
        self._report = report
        self.done = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.done += len(data)
        self._report(self.done)
        return data


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(time.time())
    return info


def export(hv: Hypervisor, name: str, to: str | Path, *, compress: bool = False,
           report: Reporter = QUIET) -> ExportResult:
    """Write shut-off VM `name` (definition, flattened disks, kvmhub metadata) into the archive `to`.

    `compress` stores the qcow2 disks with compressed clusters (``qemu-img convert -c``): plain qcow2 that
    stays compressed once imported (QEMU reads it as is; only new writes are uncompressed).

    Raises Conflict for a VM that is not shut off or an existing `to`, InvalidInput for a missing directory,
    NotFound for a disk libvirt cannot read. On any failure or interrupt nothing is left under `to`.
    """
    began = time.monotonic()
    dom = get_vm(hv, name)
    if (state := dom.state()) != "shut off":
        raise Conflict(f"cannot export VM {name}: it is {state}",
                       cause="its disks change while the guest runs, so the copy would not be consistent",
                       hint=f"stop it first: {{cmd:stop {name}}}, export, then {{cmd:start {name}}}",
                       code="vm.wrong_state")
    dest = Path(to).absolute()
    partial = dest.with_name(dest.name + ".partial")
    if dest.exists():
        raise Conflict(f"{dest} already exists", cause="kvmhub never overwrites an export",
                       hint="pick another {opt:to}, or remove the old file")
    if not dest.parent.is_dir():
        raise InvalidInput(f"directory {dest.parent} does not exist", hint=f"`mkdir -p {dest.parent}`")
    sources = _sources(hv, dom)
    if hv_snap.list_all(dom):
        report.warn("snapshots are not exported, only the VM's current state")
    if hv_saves.has_managed_save(dom):
        report.warn("the VM's saved memory state is not exported; the imported VM boots afresh from disks "
            "that were in use when it was saved")
    with Operation(hv, "vm.export", name, locks=[LockSpec("vm", name, shared=True)], report=report) as undo, \
            tempfile.TemporaryDirectory(prefix=".kvmhub-export-", dir=dest.parent) as tmp:
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise Conflict(f"{partial} exists: another export is running, or one was killed",
                           hint=f"remove it if no export is running: `rm {partial}`") from None
        undo.add(f"remove {partial.name}", undo_actions.remove_file(str(partial), os.fstat(fd).st_ino,
                                                                      seen_here=True))
        fh = os.fdopen(fd, "wb")
        undo.on_exit(fh.close)
        work = Path(tmp)
        disks: list[ExportDisk] = []
        files: list[Path] = []
        for src in sources:
            report.phase(f"reading disk {src.target}")
            path, capacity = _flatten(src, work, report, undo.progress, compress)
            report.phase(f"checksumming disk {src.target}")
            files.append(path)
            disks.append(ExportDisk(target=src.target, file=f"disk-{src.target}.{src.format}", format=src.format,
                                    bytes=path.stat().st_size, capacity=capacity, sha256=_sha256(path),
                                    volume=src.chain[0][0].name))
        domain_xml = dom.xml(inactive=True)
        nvram = _read_nvram(hv, domain_xml, report)
        tpm = export_tpm.read_state(hv, parse(domain_xml, "domain"), dom.uuid, report)
        manifest = ExportManifest(vm=name, uuid=dom.uuid, domain_xml=domain_xml, disks=disks,
                                  tpm=export_tpm.manifest_of(tpm),
                                  created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                  nvram=ExportNvram(bytes=len(nvram), sha256=hashlib.sha256(nvram).hexdigest())
                                  if nvram is not None else None)
        report.phase("writing the archive")
        # compressed clusters leave gzip little to win: its cheapest level then
        _write_archive(fh, manifest, files, undo.progress, level=1 if compress else 6, nvram=nvram, tpm=tpm)
        os.replace(partial, dest)
        undo.success()
    return ExportResult(file=dest, bytes=dest.stat().st_size, manifest=manifest,
                        duration_s=round(time.monotonic() - began, 2))


def _read_nvram(hv: Hypervisor, domain_xml: str, report: Reporter) -> bytes | None:
    path = nvram_files.nvram_path(parse(domain_xml, "domain"))
    if path is None:
        return None
    if not host_files_here(hv.uri):
        report.warn("the NVRAM (UEFI variables) of a VM on another host is not exported; the imported VM's "
            "starts from the firmware's template")
        return None
    data = nvram_files.read(path)
    if data is not None and len(data) > nvram_files.LIMIT:
        raise Conflict(f"the NVRAM file {path} is over {nvram_files.LIMIT} bytes", hint="check the file")
    return data


def _offset(progress: BytesFn, base: int, total: int, done: int) -> None:
    progress("compressing", base + done, total)


def _write_archive(raw: IO[bytes], manifest: ExportManifest, files: list[Path], progress: BytesFn,
                   level: int = 6, nvram: bytes | None = None, tpm: export_tpm.State | None = None) -> None:
    total = sum(p.stat().st_size for p in files)
    sent = 0
    with raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=level) as tar:
        data = manifest.model_dump_json(indent=2).encode()
        tar.addfile(_member(MANIFEST, len(data)), io.BytesIO(data))
        for disk, path in zip(manifest.disks, files, strict=True):
            base = sent
            with open(path, "rb") as fh:
                reader = _Reader(fh, functools.partial(_offset, progress, base, total))
                tar.addfile(_member(disk.file, disk.bytes), reader)
            sent += disk.bytes
            path.unlink()
            faults.point("export-disk")
        if manifest.nvram is not None and nvram is not None:
            tar.addfile(_member(manifest.nvram.file, len(nvram)), io.BytesIO(nvram))
        export_tpm.add_members(tar, tpm or [])
        raw.flush()
        os.fsync(raw.fileno())


# -- import -----------------------------------------------------------------------------------------------


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{path} is not a kvmhub export", cause="it is not a (gzip-compressed) tar archive",
                           original=str(exc)) from None


def _refuse(path: Path, why: str) -> InvalidInput:
    return InvalidInput(f"{path} is not a safe kvmhub export: {why}",
                        cause="the archive was damaged, or made to attack the host that imports it",
                        hint="export the VM again with {cmd:export NAME --to FILE} on a trusted host")


def _check_member(path: Path, member: tarfile.TarInfo, expected: dict[str, ExportDisk], seen: set[str]) -> ExportDisk:
    """The disk a tar member holds; anything but a regular file the manifest names is refused."""
    name = member.name
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise _refuse(path, f"member {name!r} points outside the archive")
    if not member.isreg():
        kind = "a link" if member.issym() or member.islnk() else "not a regular file"
        raise _refuse(path, f"member {name!r} is {kind}")
    disk = expected.get(name)
    if disk is None:
        raise _refuse(path, f"member {name!r} is not named in its manifest")
    if name in seen:
        raise _refuse(path, f"member {name!r} appears twice")
    if member.size != disk.bytes:
        raise _refuse(path, f"member {name!r} holds {member.size} bytes, its manifest says {disk.bytes}")
    seen.add(name)
    return disk


def read_manifest(tar: tarfile.TarFile, path: Path) -> ExportManifest:
    """The manifest, which must be the archive's first member."""
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isreg() or first.size > MANIFEST_LIMIT:
        raise InvalidInput(f"{path} is not a kvmhub export", cause=f"it does not start with {MANIFEST}")
    fh = tar.extractfile(first)
    assert fh is not None
    try:
        manifest = ExportManifest.model_validate_json(fh.read())
    except ValueError as exc:
        raise _refuse(path, f"its {MANIFEST} is not valid") from exc
    if len({d.file for d in manifest.disks}) != len(manifest.disks) or \
            len({d.target for d in manifest.disks}) != len(manifest.disks):
        raise _refuse(path, "its manifest names a disk twice")
    return manifest


@dataclass
class _Plan:
    spec: VMSpec  # what kvmhub's model reads of the archived definition (for the checks)
    name: str
    fresh: bool  # imported as a copy: new UUID and MACs
    network: str | None
    domain_type: str
    volumes: dict[str, str]  # target -> new volume name
    nvram: str | None  # the new VM's NVRAM file, when its definition has one
    write_nvram: bool  # the archived NVRAM goes into that file (its host is this machine)


def _plan(hv: Hypervisor, manifest: ExportManifest, path: Path, as_name: str | None, pool: hv_storage.Pool,
          network: str | None, report: Reporter) -> _Plan:
    """The VM to define, checked against the host before anything is made."""
    spec = domain_from_xml(manifest.domain_xml)
    new_name = check_name(as_name or spec.name, "VM")
    if hv_domains.exists(hv, new_name):
        raise Conflict(f"a VM named {new_name!r} already exists", hint="import it under another name: {opt:as} NEWNAME")
    archived = {d.target: d for d in manifest.disks}
    for disk in spec.disks:
        if disk.target not in archived and (disk.source.path or disk.source.volume):
            raise _refuse(path, f"its definition gives disk {disk.target} a host file the archive does not hold")
    if spec.boot.kernel or spec.boot.initrd:
        raise _refuse(path, "its definition boots a kernel from a path on the host")
    if spec.meta.forwards:
        report.warn("port forwards are not imported (they belong to the old host); add them again with "
            "`kvmhub net forward`")
    nics = spec.nics
    if network is not None:
        hv_networks.lookup_network(hv, network)
        nics = [n.model_copy(update={"network": network, "bridge": None}) for n in nics]
    for nic in nics:
        if nic.network:
            try:
                hv_networks.lookup_network(hv, nic.network)
            except NotFound:
                raise NotFound(f"the VM's network {nic.network!r} does not exist on this host",
                               hint=f"create it ({{cmd:net create {nic.network}}}), or connect the VM to another "
                                    "one: `{opt:network} NET`", code="network.not_found") from None
    if as_name is None:
        if spec.uuid and spec.uuid in {d.uuid for d in hv_domains.list_all(hv)}:
            raise Conflict(f"a VM with the UUID of {spec.name} ({spec.uuid}) already exists on this host",
                           hint="import it as a copy: {opt:as} NEWNAME (a new UUID and new MAC addresses)")
        taken = leases.used_macs(hv) & {n.mac.lower() for n in nics if n.mac}
        if taken:
            raise Conflict(f"MAC address {', '.join(sorted(taken))} is already used by a VM on this host",
                           hint="import it as a copy: {opt:as} NEWNAME (a new UUID and new MAC addresses)")
    volumes = {t: _volume_name(spec.name, new_name, d) for t, d in archived.items()}
    fresh = as_name is not None
    existing = set(pool.volume_names())
    if clash := sorted(v for v in volumes.values() if v in existing):
        raise Conflict(f"pool {pool.name} already has volume {', '.join(clash)}",
                       hint="import under another name ({opt:as}), into another pool ({opt:pool}), "
                       "or remove the volume")
    domain_type = spec.domain_type
    if domain_type == "kvm":
        domain_type = accel.domain_type(accel.accelerator().accelerator)
        if domain_type != "kvm":
            report.warn(f"{accel.TCG_WARNING}")
    _refuse_host_ties(manifest, path, network)
    nvram, write_nvram = _nvram_plan(hv, manifest, new_name, report)
    return _Plan(spec, new_name, fresh, network, domain_type, volumes, nvram, write_nvram)


def _nvram_plan(hv: Hypervisor, manifest: ExportManifest, new_name: str, report: Reporter) -> tuple[str | None, bool]:
    """(the new VM's NVRAM path, whether the archived file is written there): only a host whose files are
    this machine's gets it; elsewhere libvirt makes the file from the firmware template at the first start."""
    if nvram_files.nvram_path(parse(manifest.domain_xml, "domain")) is None:
        return None, False
    nvram = nvram_files.new_path(new_name)  # libvirt's directory: never one the archive names
    if not host_files_here(hv.uri):
        if manifest.nvram is not None:
            report.warn("the archived NVRAM (UEFI variables) is not written on another host; the imported VM's "
                "starts from the firmware's template")
        return nvram, False
    if os.path.lexists(host_root() + nvram):
        raise Conflict(f"NVRAM file {nvram} already exists", cause="left over from an earlier VM of that name",
                       hint=f"remove it (`rm {nvram}`) if no VM uses it, or import under another name ({{opt:as}})")
    return nvram, manifest.nvram is not None


def _refuse_host_ties(manifest: ExportManifest, path: Path, network: str | None) -> None:
    """Refuse a definition holding what kvmhub's export never writes (a NIC's host side goes with --network)."""
    tree = parse(manifest.domain_xml, "domain")
    ties = untrusted_refusals(tree, allow_tpm_emulator=True)  # its state comes from the archive, or starts empty
    if network is not None:
        ties = [t for t in ties if not (t.kind == "nic" and t.what.startswith("NIC of type"))]
    if ties:
        raise _refuse(path, "its definition has " + "; ".join(f"{t.what} ({t.why})" for t in ties))


def _volume_name(old_vm: str, new_vm: str, disk: ExportDisk) -> str:
    """The old volume name with the VM's new name (``web-disk0.qcow2`` → ``copy-disk0.qcow2``)."""
    old = disk.volume or ""
    if old.startswith(f"{old_vm}-") and re.fullmatch(r"[A-Za-z0-9._-]+", old):
        return new_vm + old[len(old_vm):]
    return f"{new_vm}-{disk.target}.{disk.format}"


def _unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, disk: ExportDisk, dst: Path, path: Path,
            progress: BytesFn) -> None:
    """Copy one member into `dst` and check its checksum and (qemu-img) that it is self-contained."""
    src = tar.extractfile(member)
    assert src is not None
    digest = hashlib.sha256()
    done = 0
    with open(dst, "wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            done += len(chunk)
            progress(f"unpacking {disk.target}", done, disk.bytes)
    if digest.hexdigest() != disk.sha256:
        raise _refuse(path, f"disk {disk.target} does not match its checksum")
    try:
        qemu_img.check_safe(dst, disk.format)
    except InvalidInput as exc:
        raise _refuse(path, f"disk {disk.target}: {exc.message}") from None


def import_vm(hv: Hypervisor, req: ImportRequest, *, report: Reporter = QUIET) -> str:
    """Define a VM from the export archive ``req.media``, its disks uploaded into ``req.pool`` (default: ``default``).

    ``req.as_name`` imports it as a copy: that name, a new UUID and new MAC addresses. ``req.network`` connects
    every NIC to that network. Returns the VM's name; it is left shut off. Raises Conflict for a taken name,
    UUID, MAC or volume, NotFound for a missing archive or network, InvalidInput for an unsafe or damaged
    archive. On failure everything made is removed.
    """
    as_name, pool, network = req.as_name, req.pool, req.network
    path = media_path(hv, req.media, "export file")
    if not path.is_file():
        raise NotFound(f"no export file {path}")
    target_pool = hv_storage.lookup_pool(hv, pool) if pool else pools.disks_pool(hv)
    project = projects.resolve(req.project)
    with _open(path) as tar:
        try:
            return _import(hv, tar, path, as_name, target_pool, network, project, report)
        except tarfile.TarError as exc:
            raise InvalidInput(f"{path} is damaged or truncated", original=str(exc),
                               hint="export the VM again") from None


def _import(hv: Hypervisor, tar: tarfile.TarFile, path: Path, as_name: str | None, pool: hv_storage.Pool,
            network: str | None, project: str, report: Reporter) -> str:
    manifest = read_manifest(tar, path)
    plan = _plan(hv, manifest, path, as_name, pool, network, report)
    plan.spec = plan.spec.model_copy(update={"meta": plan.spec.meta.model_copy(update={"project": project})})
    name = plan.name
    expected = {d.file: d for d in manifest.disks}
    seen: set[str] = set()
    made: dict[str, hv_storage.Volume] = {}
    new_uuid = str(uuidlib.uuid4()) if plan.fresh else plan.spec.uuid
    locks = [LockSpec("vm", name), projects.lock(project)]
    with Operation(hv, "vm.import", name, locks=locks, report=report) as undo, \
            tempfile.TemporaryDirectory(prefix="kvmhub-import-") as tmp:
        if hv_domains.exists(hv, name):  # again under the lock
            raise Conflict(f"a VM named {name!r} already exists", hint="import it under another name: {opt:as} NAME",
                           code="name.taken")
        spec = plan.spec
        projects.check(hv, project, ProjectUse(
            vms=1, cpus=spec.max_vcpus or spec.vcpus, memory=(spec.max_memory_mib or spec.memory_mib) * 1024**2,
            disk=sum(d.capacity for d in manifest.disks)))
        for _n in range(len(manifest.disks)):
            if (member := tar.next()) is None:
                break
            disk = _check_member(path, member, expected, seen)
            local = Path(tmp) / disk.file
            report.phase(f"unpacking disk {disk.target}")
            _unpack(tar, member, disk, local, path, undo.progress)
            vol_name = plan.volumes[disk.target]
            report.phase(f"uploading disk {disk.target} into {pool.name}/{vol_name}")
            label = f"uploading {disk.target}"
            made[disk.target] = upload_volume(pool, vol_name, local, undo, functools.partial(undo.progress, label))
            local.unlink()
            faults.point("vm-import-disk")
        if missing := sorted(set(expected) - seen):
            raise _refuse(path, f"it lacks {', '.join(missing)} (truncated?)")
        nvram = _read_nvram_member(tar, manifest, path) if manifest.nvram is not None else None
        tpm = export_tpm.read_members(tar, manifest.tpm, parse(manifest.domain_xml, "domain"),
                                      functools.partial(_refuse, path)) if manifest.tpm else {}
        if (extra := tar.next()) is not None:
            raise _refuse(path, f"member {extra.name!r} is not named in its manifest")
        if nvram is not None and plan.nvram is not None and plan.write_nvram:
            report.phase("writing the NVRAM (UEFI variables)")
            nvram_files.write(plan.nvram, nvram, undo)
        assert new_uuid is not None
        export_tpm.restore(hv, new_uuid, tpm, undo, report)
        xml = _definition(hv, manifest, plan, pool, made, undo, report, new_uuid)
        faults.point("vm-import-address")
        report.phase(f"defining VM {name}")
        assert new_uuid is not None
        undo.add(f"remove the definition of {name}", undo_actions.undefine_domain(new_uuid, name))
        hv_domains.define(hv, xml)
        faults.point("vm-import-define")
        undo.success()
    return name


def _read_nvram_member(tar: tarfile.TarFile, manifest: ExportManifest, path: Path) -> bytes:
    assert manifest.nvram is not None
    member = tar.next()
    if member is None or member.name != manifest.nvram.file or not member.isreg() \
            or member.size != manifest.nvram.bytes:
        raise _refuse(path, f"its {manifest.nvram.file} is missing or not what its manifest says")
    fh = tar.extractfile(member)
    assert fh is not None
    data = fh.read(nvram_files.LIMIT)
    if hashlib.sha256(data).hexdigest() != manifest.nvram.sha256:
        raise _refuse(path, f"{manifest.nvram.file} does not match its checksum")
    return data


def _definition(hv: Hypervisor, manifest: ExportManifest, plan: _Plan, pool: hv_storage.Pool,
                made: dict[str, hv_storage.Volume], undo: StepLog, report: Reporter, new_uuid: str | None) -> str:
    """The archived definition with the new identity; addresses reserved on kvmhub networks."""
    tree = parse(manifest.domain_xml, "domain")
    formats = {d.target: d.format for d in manifest.disks}
    sources: dict[str, NewSource] = {}
    for disk in tree.iterfind("devices/disk"):
        target = disk.find("target")
        key, dev = source_key(disk), target.get("dev") if target is not None else None
        if key is not None and dev in made:
            sources[key] = NewSource(pool=pool.name, volume=made[dev].name, format=formats[dev])
    macs = [leases.new_mac(hv) for _ in tree.iterfind("devices/interface")] if plan.fresh else []
    meta = plan.spec.meta.model_copy(update={"forwards": [], "owned_volumes": [f"{pool.name}/{v.name}"
                                                                               for v in made.values()],
                                             "owned_secrets": [], "owned_files": []})
    rewrite_tree(tree, Rewrite(
        name=plan.name, uuid=new_uuid, mac=(lambda n, _old: macs[n]) if macs else None,
        network=plan.network, disks=sources, serial_log=f"{SERIAL_LOG_DIR}/{plan.name}-serial.log",
        nvram=plan.nvram, meta=meta, domain_type=plan.domain_type, local_graphics=True))
    # the addresses follow the NICs as the definition now has them
    nics = domain_from_xml(serialize(tree)).nics
    _reserve_addresses(hv, plan.spec.model_copy(update={"name": plan.name, "nics": nics}), undo, report)
    return serialize(tree)


def _reserve_addresses(hv: Hypervisor, spec: VMSpec, undo: StepLog, report: Reporter) -> None:
    """An address reservation on each kvmhub network the VM joins, as `create` makes."""
    for nic in spec.nics:
        if not nic.network or not nic.mac:
            continue
        net = hv_networks.lookup_network(hv, nic.network)
        if network_subnet_from_xml(net.xml()) is None:
            continue
        network, mac = nic.network, nic.mac
        undo.add(f"release the address on {network}", undo_actions.release_lease(network, mac))
        try:
            leases.register_free(hv, network, spec.name, mac)
        except KvmhubError as exc:
            report.warn(f"no address reserved on {network}: {exc.message}")


__all__ = ["MANIFEST", "ExportDisk", "ExportManifest", "ExportResult", "export", "import_vm", "read_manifest"]
