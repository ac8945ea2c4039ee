"""Cloning a shut-off VM: full copies or linked (copy-on-write) disks, and a new identity.

The clone gets a new name, UUID, MAC address per NIC (with an address reservation and DNS name on kvmhub
networks), serial log and NoCloud seed (a new instance-id and hostname, so cloud-init treats it as a new
machine). Port forwards are not copied (they would clash); kvmhub metadata is, with the clone's own volumes.
Read-only media and direct-boot kernel and initrd files the source owns (its installer ISO, ``SRC-kernel``)
are copied, since they go when the source is removed; other read-only media stay shared. A VM whose
installer has not run yet is refused.

The clone's definition is the source's own XML with only its identity changed (:mod:`kvmhub.xml.rewrite`),
so what kvmhub does not model (UEFI firmware, TPM, video, shares, tuning, other tools' metadata) is kept.
A UEFI VM's NVRAM file is copied to ``<nvram dir>/<clone>_VARS.fd``. Host devices (PCI/USB) stay with a
warning that only one of the two VMs can run at a time; an emulated TPM's state (per UUID) is copied to the
clone's UUID on a host whose files kvmhub reaches, else the clone's TPM starts empty, with a warning.

* Full clone: each writable disk is copied by libvirt into a new, self-contained volume (its backing
  chain, the image included, merged in). Encrypted disks are refused: libvirt hands qemu-img a volume's
  key only while its pool remembers which secret opens it, forgotten at every pool refresh, and the key
  itself is private.
* Linked clone: each writable disk of the clone is a qcow2 overlay. An overlay must never sit on a file
  that is still written, so the source's disk is first frozen: its file is renamed to a read-only base
  volume ``base-<8 hex>.qcow2`` and the source gets a new, empty overlay of the same name on top of it
  (its definition does not change). The clone's overlay sits on the same base. A source disk that was
  never written since it was made is not frozen: the clone's overlay sits on what it sits on (the image,
  or a base). A base is deleted by ``storage.bases.release_bases`` once no volume is backed by it; an image
  is never written. Encrypted disks are refused too: libvirt gives QEMU no key for a backing file.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import backup as hv_backup
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import saves as hv_saves
from kvmhub.hv import snapshots as hv_snap
from kvmhub.hv import storage as hv_storage
from kvmhub.models import DiskSource, DiskSpec, NICSpec, VMSpec
from kvmhub.models.events import BytesEvent
from kvmhub.models.requests_vm import CloneRequest, CloneResult
from kvmhub.ops.actions import Action, Context, StepLog, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, BytesFn, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.network import leases
from kvmhub.services.storage import nvram as nvram_files
from kvmhub.services.vm import tpm as vm_tpm
from kvmhub.services.vm.clone_seed import new_seed, read_seed
from kvmhub.services.vm.create import SERIAL_LOG_DIR, seed_volume
from kvmhub.services.vm.lifecycle import get as get_vm
from kvmhub.tools import qemu_img
from kvmhub.tools.filecopy import copy_file
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse, serialize
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.hostbound import clone_warnings
from kvmhub.xml.network import network_subnet_from_xml
from kvmhub.xml.pool import pool_path_from_xml, pool_type_from_xml
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_tree

# libvirt's refusal to delete a volume it is still writing (a copy or transfer that outlived its client)
FILE_POOLS = ("dir", "fs", "netfs")


@dataclass
class _Disk:
    disk: DiskSpec
    kind: Literal["seed", "copy", "linked", "shared"]
    pool: hv_storage.Pool | None = None
    src: hv_storage.Volume | None = None
    facts: xml_volume.VolumeFacts | None = None
    volume: str = ""  # the clone's volume name
    freeze: bool = False  # linked: the source's disk must be frozen into a base first


@dataclass
class _BootFile:
    """A kernel or initrd volume of the source's direct kernel boot, copied for the clone."""

    role: Literal["kernel", "initrd"]
    pool: hv_storage.Pool
    src: hv_storage.Volume
    volume: str  # the clone's copy


# -- checks -----------------------------------------------------------------------------------------------


def _clone_volume_name(src_vm: str, dst_vm: str, volume: str, target: str, fmt: str) -> str:
    """The source's volume name with the clone's name (``web-disk0.qcow2`` → ``copy-disk0.qcow2``)."""
    if volume.startswith(f"{src_vm}-") and re.fullmatch(r"[A-Za-z0-9._-]+", volume):
        return dst_vm + volume[len(src_vm):]
    return f"{dst_vm}-{target}.{fmt}"


def _untouched(hv: Hypervisor, path: str) -> bool:
    """True when the qcow2 file at `path` has no cluster of its own (never written since it was made).

    Reads the file on the host (local hosts only; elsewhere the answer is False, so the disk is frozen).
    """
    if not host_files_here(hv.uri):
        return False
    # "backing": null opens the file alone: its backing path is the host's, maybe not visible from here
    opts = json.dumps({"file": {"driver": "file", "filename": host_root() + path}, "backing": None})
    out = qemu_img.run(["map", "--output=json", "-f", "qcow2", f"json:{opts}"],
                       what=f"reading the allocation of {path}", cpu=60)
    return not any(extent.get("present") for extent in json.loads(out))


def _file_pool_dir(pool: hv_storage.Pool) -> str | None:
    """The directory of a file-based pool (dir, fs, netfs); None for other kinds."""
    xml = pool.xml()
    return pool_path_from_xml(xml) if pool_type_from_xml(xml) in FILE_POOLS else None


def _require_shut_off(dom: hv_domains.Domain, name: str) -> None:
    state = dom.state()
    if state == "shut off":
        return
    raise Conflict(
        f"cannot clone VM {name}: it is {state}",
        cause="a running or paused QEMU holds the disks open and keeps writes and qcow2 metadata in its "
              "caches, so a copy (or an overlay on them) would be inconsistent",
        hint=f"stop it first: {{cmd:stop {name}}}, clone, then {{cmd:start {name}}}", code="vm.wrong_state",
    )


def _new_volume_name(req: CloneRequest, pool: hv_storage.Pool, volume: str, target: str, fmt: str,
                     taken: set[str]) -> str:
    """The clone's name for its copy of `volume`, refused when that volume exists already."""
    name = _clone_volume_name(req.source, req.name, volume, target, fmt)
    if name in taken or pool.has_volume(name):
        raise Conflict(f"volume {name} already exists in pool {pool.name}",
                       cause="left over from an earlier VM of that name, or made by hand",
                       hint=f"remove it: `virsh vol-delete {name} --pool {pool.name}`, or pick another name",
                       code="name.taken")
    taken.add(name)
    return name


def _plan_disk(hv: Hypervisor, req: CloneRequest, disk: DiskSpec, owned: list[str], taken: set[str]) -> _Disk:
    src = disk.source
    if src.pool and src.volume == seed_volume(req.source) and disk.readonly:
        pool = hv_storage.lookup_pool(hv, src.pool)
        return _Disk(disk, "seed", pool, pool.volume(src.volume), volume=seed_volume(req.name))
    if disk.readonly or disk.device == "cdrom":
        if src.pool and src.volume and f"{src.pool}/{src.volume}" in owned:
            # the source's own media (its installer ISO) go when it is removed: the clone gets a copy
            pool = hv_storage.lookup_pool(hv, src.pool)
            vol = pool.volume(src.volume)
            name = _new_volume_name(req, pool, vol.name, disk.target, disk.format, taken)
            return _Disk(disk, "copy", pool, vol, xml_volume.volume_from_xml(vol.xml()), name)
        return _Disk(disk, "shared")  # read-only media kvmhub did not make for the source stay shared
    if src.protocol is not None:
        raise Conflict(f"disk {disk.target} of {req.source} is a {src.protocol} network disk kvmhub cannot copy",
                       hint=f"detach it ({{cmd:disk rm {req.source} {disk.target}}}), clone, attach it again")
    if src.pool and src.volume:
        pool = hv_storage.lookup_pool(hv, src.pool)
        vol = pool.volume(src.volume)
    else:
        found = hv_storage.volume_by_path(hv, src.path or "")
        if found is None:
            raise Conflict(f"disk {disk.target} of {req.source} ({src.path}) is in no storage pool",
                           hint="define a pool for its directory ({cmd:pool create}), then clone")
        vol, pool = found, hv_storage.lookup_pool(hv, found.pool)
    facts = xml_volume.volume_from_xml(vol.xml())
    name = _new_volume_name(req, pool, vol.name, disk.target, "qcow2" if req.linked else disk.format, taken)
    if not req.linked:
        if disk.encryption_secret is not None:
            raise Conflict(
                f"disk {disk.target} of {req.source} is encrypted: kvmhub cannot copy it",
                cause="libvirt copies a volume with qemu-img only while its pool still knows the volume's key, "
                      "which it forgets whenever it re-reads the pool; the key itself is private (never read back)",
                hint=f"a linked clone works while the disk was never written: {{cmd:clone {req.source} "
                     f"{req.name} --linked}}",
            )
        return _Disk(disk, "copy", pool, vol, facts, name)
    if disk.format != "qcow2":
        raise Conflict(f"disk {disk.target} of {req.source} is {disk.format}: a linked clone needs qcow2 disks",
                       hint=f"make a full clone: {{cmd:clone {req.source} {req.name}}}")
    if disk.encryption_secret is not None:
        raise Conflict(f"disk {disk.target} of {req.source} is encrypted: kvmhub makes no linked clone of it",
                       cause="the clone's overlay would sit on data only the source's key opens, and libvirt "
                             "gives QEMU no key for a backing file")
    freeze = facts.backing_path is None or not _untouched(hv, vol.path)
    if freeze:
        _check_freezable(hv, req, disk, pool, vol)
    return _Disk(disk, "linked", pool, vol, facts, name, freeze)


def _check_freezable(hv: Hypervisor, req: CloneRequest, disk: DiskSpec, pool: hv_storage.Pool,
                     vol: hv_storage.Volume) -> None:
    full = f"make a full clone instead: {{cmd:clone {req.source} {req.name}}}"
    directory = _file_pool_dir(pool)
    if directory is None or os.path.dirname(vol.path) != directory.rstrip("/"):
        raise Conflict(f"disk {disk.target} of {req.source} is not a file in a directory pool",
                       cause="a linked clone freezes the source's disk file into a base, which needs a file pool",
                       hint=full)
    if not host_files_here(hv.uri):
        raise Conflict(f"disk {disk.target} of {req.source} has been written and its host is not this machine",
                       cause="freezing it into a base renames its file on the VM's host",
                       hint=f"run kvmhub on the VM's host, or {full}")


def _require_installed(spec: VMSpec, name: str) -> None:
    if spec.meta.install_boot is None:
        return
    raise Conflict(f"cannot clone VM {name}: the source has not been installed yet",
                   cause="its next start boots the installer once, then its disk; a clone of it would hold no "
                         "installed system and would keep the installer boot (a kernel boot runs it at every start)",
                   hint=f"start it once to install ({{cmd:start {name}}}), let the installer finish, then clone")


def _plan_boot(hv: Hypervisor, req: CloneRequest, spec: VMSpec, taken: set[str]) -> list[_BootFile]:
    """Copies of the kernel and initrd volumes the source owns (a direct kernel boot's files)."""
    out: list[_BootFile] = []
    files: list[tuple[Literal["kernel", "initrd"], str | None]] = [("kernel", spec.boot.kernel),
                                                                   ("initrd", spec.boot.initrd)]
    for role, path in files:
        vol = hv_storage.volume_by_path(hv, path) if path else None
        if vol is None or f"{vol.pool}/{vol.name}" not in spec.meta.owned_volumes:
            continue  # a file kvmhub did not make for the source: shared, like read-only media
        pool = hv_storage.lookup_pool(hv, vol.pool)
        name = _new_volume_name(req, pool, vol.name, role, "img", taken)
        out.append(_BootFile(role, pool, vol, name))
    return out


def _check(hv: Hypervisor, req: CloneRequest,
           report: Reporter) -> tuple[hv_domains.Domain, VMSpec, list[_Disk], list[_BootFile]]:
    """Everything checked before anything is made; returns the source, its spec, the disk and boot plan."""
    check_name(req.name, "VM")
    if req.name == req.source:
        raise InvalidInput("a clone needs a name of its own", hint="{cmd:clone SRC NEWNAME}")
    dom = get_vm(hv, req.source)
    if hv_domains.exists(hv, req.name):
        raise Conflict(f"a VM named {req.name!r} already exists", hint="pick another name, or {cmd:rm} it",
                       code="name.taken")
    _require_shut_off(dom, req.source)
    spec = domain_from_xml(dom.xml(inactive=True))
    _require_installed(spec, req.source)
    if hv_snap.list_all(dom):
        if req.linked:
            raise Conflict(f"VM {req.source} has snapshots; kvmhub makes no linked clone of it",
                           cause="its snapshots live in the disk files a linked clone freezes into a shared base",
                           hint=f"remove them ({{cmd:snapshot ls {req.source}}}), or make a full clone")
        report.warn("snapshots are not cloned, only the VM's current state")
    if req.linked and hv_backup.checkpoints(dom):
        raise Conflict(f"VM {req.source} has backup checkpoints; kvmhub makes no linked clone of it",
                       cause="their dirty bitmaps live in the disk files a linked clone freezes into a shared base",
                       hint="make a full clone, or remove the checkpoints (`virsh checkpoint-delete`)")
    if hv_saves.has_managed_save(dom):
        report.warn(f"{req.source} has saved memory state; the clone boots afresh from its disks")
    if req.network is not None:
        hv_networks.lookup_network(hv, req.network)
    taken: set[str] = set()
    disks = [_plan_disk(hv, req, d, spec.meta.owned_volumes, taken) for d in spec.disks]
    if not any(d.kind in ("copy", "linked") and not d.disk.readonly and d.disk.device == "disk" for d in disks):
        raise Conflict(f"VM {req.source} has no writable disk to clone")
    for d in disks:
        if d.kind == "seed" and d.pool is not None and d.pool.has_volume(d.volume):
            raise Conflict(f"volume {d.volume} already exists in pool {d.pool.name}",
                           hint=f"remove it: `virsh vol-delete {d.volume} --pool {d.pool.name}`", code="name.taken")
    return dom, spec, disks, _plan_boot(hv, req, spec, taken)


# -- bases ------------------------------------------------------------------------------------------------


def _freeze(hv: Hypervisor, d: _Disk, undo: StepLog) -> str:
    """Rename the source's disk file to a new base and give the source an empty overlay on it; returns the
    base's path. The source's definition does not change (the overlay takes the old name)."""
    assert d.pool is not None and d.src is not None and d.facts is not None
    pool, name, path = d.pool, d.src.name, d.src.path
    directory = os.path.dirname(path)
    while True:
        base = f"base-{uuidlib.uuid4().hex[:8]}.qcow2"
        if not pool.has_volume(base) and not os.path.exists(host_root() + os.path.join(directory, base)):
            break
    base_path = os.path.join(directory, base)
    undo.add(f"restore {pool.name}/{name} from {base}",
             Action("volume.unfreeze", {"pool": pool.name, "name": name, "path": path, "base": base_path}))
    os.rename(host_root() + path, host_root() + base_path)
    faults.point("clone-renamed")
    pool.refresh()
    pool.create_volume(xml_volume.volume_xml(name, d.facts.capacity_bytes, "qcow2", base_path, "qcow2"),
                       what=f"putting a new overlay on the frozen disk of {d.disk.target}")
    return base_path


@register("volume.unfreeze")
def _unfreeze(ctx: Context, p: dict[str, Any]) -> None:
    """Give the source its disk file back: drop the empty overlay that took its name, rename the base back."""
    base, path = ctx.path(p["base"]), ctx.path(p["path"])
    if not os.path.exists(base):
        return
    pool = hv_storage.lookup_pool(ctx.hv, p["pool"])
    pool.refresh()
    if pool.has_volume(p["name"]):
        vol = pool.volume(p["name"])
        if xml_volume.volume_from_xml(vol.xml()).backing_path != p["base"]:
            return  # not the overlay the freeze made: leave both alone
        vol.delete()
    elif os.path.lexists(path):
        return  # something else took the name: leave both alone
    os.rename(base, path)
    pool.refresh()


# -- disks and seed ---------------------------------------------------------------------------------------


def _chain_bytes(hv: Hypervisor, vol: hv_storage.Volume) -> int:
    """Bytes allocated along a volume's backing chain: what a full copy reads at most."""
    total, seen = 0, 0
    current: hv_storage.Volume | None = vol
    while current is not None and seen < 32:
        total += current.info().allocation
        below = xml_volume.volume_from_xml(current.xml()).backing_path
        current = hv_storage.volume_by_path(hv, below) if below else None
        seen += 1
    return total


def _copy(hv: Hypervisor, d: _Disk, progress: BytesFn, report: Reporter) -> None:
    """A full, self-contained copy of the source's disk, a progress bar fed by the copy's size meanwhile.

    ``progress`` is called in this thread (it may raise Cancelled, which stops a copy kvmhub runs itself);
    libvirt's own copy is watched from another thread, which only emits byte events into ``report``.
    """
    assert d.pool is not None and d.src is not None and d.facts is not None
    pool, label = d.pool, f"copying {d.disk.target}"
    total = max(_chain_bytes(hv, d.src), 1)
    xml = xml_volume.volume_xml(d.volume, d.facts.capacity_bytes, d.disk.format)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            try:
                done = pool.volume(d.volume).info().allocation
            except KvmhubError:
                continue
            report.emit(BytesEvent(what=label, done=min(done, total), total=total))

    enter = _host_prefix(hv)
    if enter is not None and d.disk.format == "qcow2":
        # on the host's own files: a kernel copy of a flat disk, qemu-img for a chain; libvirt's copy is slower
        vol = pool.create_volume(xml_volume.volume_xml(d.volume, 0, "raw"), what=f"creating volume {d.volume}")
        if d.facts.backing_path is None:
            copy_file(Path(host_root() + d.src.path), Path(host_root() + vol.path),
                      lambda done, _all: progress(label, done, total), what=f"pool {pool.name}")
        else:
            qemu_img.convert(Path(d.src.path), "qcow2", Path(vol.path), enter=enter,
                             progress=lambda pct: progress(label, int(total * pct / 100), total))
        pool.refresh()
        progress(label, total, total)
        return
    watcher = threading.Thread(target=watch, name=f"watch {d.volume}", daemon=True)
    watcher.start()
    try:
        pool.create_volume_from(xml, d.src, what=f"copying disk {d.disk.target} ({d.src.name})")
    finally:
        stop.set()
        watcher.join(5)
    progress(label, total, total)


def _host_prefix(hv: Hypervisor) -> list[str] | None:
    """How to run a command among the host's files: [] here, nsenter for a test host; None if remote."""
    if not host_files_here(hv.uri):
        return None
    root = host_root()
    if not root:
        return []
    m = re.fullmatch(r"/proc/(\d+)/root", root)
    return ["nsenter", "-t", m.group(1), "-m", "--"] if m else None


def _overlay(d: _Disk, backing: str, backing_format: str) -> None:
    assert d.pool is not None and d.facts is not None
    d.pool.create_volume(
        xml_volume.volume_xml(d.volume, d.facts.capacity_bytes, "qcow2", backing, backing_format),
        what=f"making the overlay of disk {d.disk.target}",
    )


# -- the clone --------------------------------------------------------------------------------------------


def _nics(hv: Hypervisor, req: CloneRequest, nics: list[NICSpec]) -> list[NICSpec]:
    out = []
    for nic in nics:
        network = req.network or nic.network
        bridge = None if req.network else nic.bridge
        out.append(nic.model_copy(update={"network": network, "bridge": bridge,
                                          "mac": leases.new_mac(hv, network) if network else leases.new_mac(hv),
                                          "filter_params": {k: v for k, v in nic.filter_params.items()
                                                            if k != "IP"}}))
    return out


def _reserve(hv: Hypervisor, name: str, nics: list[NICSpec], undo: StepLog) -> tuple[list[NICSpec], list[str]]:
    """A reservation and DNS name for each NIC on a kvmhub network; the firewall learns the new address."""
    out, ips = [], []
    for nic in nics:
        network, mac = nic.network, nic.mac
        if network and mac and network_subnet_from_xml(hv_networks.lookup_network(hv, network).xml()) is not None:
            undo.add(f"release the address on {network}", undo_actions.release_lease(network, mac))
            ip = leases.register_free(hv, network, name, mac)
            ips.append(ip)
            if nic.filter:
                nic = nic.model_copy(update={"filter_params": {**nic.filter_params, "IP": ip}})
        out.append(nic)
    return out, ips


def clone(hv: Hypervisor, req: CloneRequest, *, report: Reporter = QUIET) -> CloneResult:
    """Clone shut-off VM `req.source` as `req.name` (full, or linked with `req.linked`), optionally start it.

    The clone's definition is the source's own, changed only in identity (see :mod:`kvmhub.xml.rewrite`);
    host devices and a TPM are kept (see :mod:`kvmhub.xml.hostbound`), a UEFI VM's NVRAM file and an emulated
    TPM's state are copied. Raises InvalidInput / NotFound / Conflict before anything is made when the request
    cannot be done; HostProblem when the disk fills mid-copy. Any failure, Ctrl-C or ``report.cancel`` undoes every
    finished step.
    """
    began = time.monotonic()
    dom, spec, plan, boot_files = _check(hv, req, report)
    source_xml = dom.xml(inactive=True)
    tree = parse(source_xml, "domain")
    local = _host_prefix(hv) is not None
    copy_tpm = local and vm_tpm.emulated(tree) and vm_tpm.has_state(dom.uuid)
    tpm_state: Literal["copied", "none", "not copied"] = "copied" if copy_tpm else "none" if local else "not copied"
    for warning in clone_warnings(tree, tpm_state=tpm_state):
        report.warn(f"{warning}")
    nvram = nvram_files.clone_plan(tree, req.name, local=local, report=report)
    vm_uuid = str(uuidlib.uuid4())
    result = CloneResult(name=req.name, linked=req.linked)
    sources: dict[str, NewSource] = {}
    boot: dict[str, str] = {}
    project = projects.resolve(req.project)
    locks = [LockSpec("vm", req.name), LockSpec("vm", req.source), projects.lock(project)]
    with Operation(hv, "vm.clone", req.name, locks=locks, report=report) as undo:
        if hv_domains.exists(hv, req.name):  # again under the lock: a clone or create of that name may have won
            raise Conflict(f"a VM named {req.name!r} already exists", hint="pick another name", code="name.taken")
        projects.check(hv, project, projects.use_of_spec(hv, spec))
        for d in plan:
            made = _make_disk(hv, req, d, vm_uuid, result, undo, report)
            if d.kind != "shared" and (key := _key(d.disk.source)):
                sources[key] = NewSource(pool=made.source.pool, volume=made.source.volume, format=made.format)
        for b in boot_files:
            report.phase(f"copy {b.role} {b.src.name}")
            undo.add(f"delete volume {b.volume}", undo_actions.delete_volume(b.pool.name, b.volume, building=True))
            copied = b.pool.create_volume_from(xml_volume.volume_xml(b.volume, b.src.info().capacity, "raw"), b.src,
                                               what=f"copying the {b.role} {b.src.name}")
            result.volumes.append(f"{b.pool.name}/{b.volume}")
            boot[b.src.path] = copied.path
        if nvram is not None:
            report.phase("copy the NVRAM (UEFI variables)")
            nvram_files.copy(nvram[0], nvram[1], undo)
        if copy_tpm:
            report.phase("copy the TPM state")
            vm_tpm.copy_state(dom.uuid, vm_uuid, undo)
        nics = _nics(hv, req, spec.nics)
        filter_ips: dict[str, str] = {}
        if nics:
            report.phase("reserve addresses")
            nics, result.ips = _reserve(hv, req.name, nics, undo)
            filter_ips = {n.mac: n.filter_params["IP"] for n in nics if n.mac and "IP" in n.filter_params}
            faults.point("clone-address")
        new_macs = {(old.mac or "").lower(): new.mac for old, new in zip(spec.nics, nics, strict=True) if new.mac}
        report.phase("define")
        meta = spec.meta.model_copy(update={
            "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(), "project": project,
            "owned_volumes": result.volumes, "owned_secrets": [], "owned_files": [], "forwards": []})
        change = Rewrite(
            name=req.name, uuid=vm_uuid, network=req.network, filter_ips=filter_ips, disks=sources,
            mac=lambda _n, old: new_macs.get((old or "").lower()) or leases.new_mac(hv, req.network),
            serial_log=f"{SERIAL_LOG_DIR}/{req.name}-serial.log", boot_files=boot, meta=meta,
            nvram=nvram_files.clone_path(tree, req.name))
        rewrite_tree(tree, change)
        undo.add(f"undefine VM {req.name}", undo_actions.undefine_domain(vm_uuid, req.name))
        new_dom = hv_domains.define(hv, serialize(tree))
        faults.point("clone-define")
        if req.start:
            report.phase("start")
            undo.add(f"kill VM {req.name}", undo_actions.destroy_domain(vm_uuid, req.name))
            new_dom.start()
            faults.point("clone-start")
        undo.success()
    result.duration_s = round(time.monotonic() - began, 3)
    return result


def _key(src: DiskSource) -> str | None:
    """A disk source as :attr:`Rewrite.disks` keys it."""
    return f"{src.pool}/{src.volume}" if src.pool and src.volume else src.path


def _make_disk(hv: Hypervisor, req: CloneRequest, d: _Disk, vm_uuid: str, result: CloneResult, undo: Operation,
               report: Reporter) -> DiskSpec:
    """The clone's disk `d` made (copied, overlaid, seeded or shared); returns its DiskSpec."""
    if d.kind == "shared":
        return d.disk
    assert d.pool is not None and d.src is not None
    pool, target = d.pool, d.disk.target
    if d.kind == "seed":
        report.phase("build seed")
        try:
            docs = read_seed(d.src)
        except KvmhubError as exc:
            report.warn(f"the seed of {req.source} is unreadable ({exc.message}); the clone gets a minimal one")
            docs = {}
        iso = new_seed(docs, req.name, vm_uuid, report)
        undo.add(f"delete volume {d.volume}", undo_actions.delete_volume(pool.name, d.volume))
        seed = pool.create_volume(xml_volume.volume_xml(d.volume, len(iso), "raw"), what="creating the seed")
        seed.upload(io.BytesIO(iso), len(iso))
        result.volumes.append(f"{pool.name}/{d.volume}")
        faults.point("clone-seed")
        return d.disk.model_copy(update={"source": DiskSource(pool=pool.name, volume=d.volume)})
    assert d.facts is not None
    if d.kind == "copy":
        report.phase(f"copy disk {target}")
        undo.add(f"delete volume {d.volume}", undo_actions.delete_volume(pool.name, d.volume, building=True))
        _copy(hv, d, undo.progress, report)
    else:
        if d.freeze:
            report.phase(f"freeze disk {target} of {req.source}")
            base = _freeze(hv, d, undo)
            result.frozen.append(f"{pool.name}/{os.path.basename(base)}")
            faults.point("clone-freeze")
            backing, fmt = base, "qcow2"
        else:
            assert d.facts.backing_path is not None
            backing, fmt = d.facts.backing_path, d.facts.backing_format or "qcow2"
        report.phase(f"overlay disk {target}")
        # registered after the freeze, so a rollback deletes the overlay before the base is renamed back
        undo.add(f"delete volume {d.volume}", undo_actions.delete_volume(pool.name, d.volume))
        _overlay(d, backing, fmt)
        result.backing[target] = backing
    result.volumes.append(f"{pool.name}/{d.volume}")
    faults.point("clone-disk")
    return d.disk.model_copy(update={"source": DiskSource(pool=pool.name, volume=d.volume),
                                     "format": "qcow2" if d.kind == "linked" else d.disk.format,
})


__all__ = ["CloneRequest", "CloneResult", "clone", "new_seed"]
