"""Which VMs use which storage: every domain's disks, followed down their backing chains."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse

_MAX_CHAIN = 16


@dataclass
class _VMDisks:
    refs: set[tuple[str, str]] = field(default_factory=set)  # (pool, volume) sources
    top: set[str] = field(default_factory=set)  # the files the VM writes: its disks' own paths
    paths: set[str] = field(default_factory=set)  # those and every backing file below them


@dataclass
class Usage:
    """A snapshot of every VM's disk sources (defined and running VMs, live and persistent definitions)."""

    vms: dict[str, _VMDisks] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)

    def vms_in_pool(self, pool: str, target: str | None, volume_paths: set[str]) -> list[str]:
        """VMs with a disk in ``pool``: by volume source, a path under its target, or one of its volumes."""
        users = []
        for vm, disks in self.vms.items():
            if any(p == pool for p, _v in disks.refs) or disks.paths & volume_paths or (
                target and any(_under(path, target) for path in disks.paths)
            ):
                users.append(vm)
        return sorted(users)

    def vms_using(self, pool: str, volume: str, path: str | None) -> list[str]:
        """VMs whose disks are this volume, or overlays backed by it."""
        return sorted(
            vm for vm, disks in self.vms.items()
            if (pool, volume) in disks.refs or (path is not None and path in disks.paths)
        )

    def vms_writing(self, pool: str, volume: str, path: str | None) -> list[str]:
        """VMs with this volume itself as a disk (not merely as a backing file)."""
        return sorted(
            vm for vm, disks in self.vms.items()
            if (pool, volume) in disks.refs or (path is not None and path in disks.top)
        )


def _under(path: str, directory: str) -> bool:
    return posixpath.normpath(path).startswith(directory.rstrip("/") + "/")


def _disk_sources(xml: str) -> tuple[set[tuple[str, str]], set[str], set[str]]:
    root = parse(xml, "domain")
    refs: set[tuple[str, str]] = set()
    paths: set[str] = set()
    below_paths: set[str] = set()
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        if source is None:
            continue
        kind = disk.get("type", "file")
        if kind == "volume" and source.get("pool") and source.get("volume"):
            refs.add((source.get("pool", ""), source.get("volume", "")))
        elif kind in ("file", "block") and (path := source.get("file") or source.get("dev")):
            paths.add(path)
        # a running VM's live XML lists its backing chain
        for below in disk.iterfind(".//backingStore/source"):
            if below_path := below.get("file") or below.get("dev"):
                below_paths.add(below_path)
    return refs, paths, below_paths


class _Chains:
    """Backing chains of volumes, looked up through libvirt once per path."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self._below: dict[str, str | None] = {}
        self._vol_paths: dict[tuple[str, str], str | None] = {}

    def volume_path(self, pool: str, volume: str) -> str | None:
        key = (pool, volume)
        if key not in self._vol_paths:
            try:
                self._vol_paths[key] = hv_storage.lookup_pool(self.hv, pool).volume(volume).path
            except KvmhubError:
                self._vol_paths[key] = None
        return self._vol_paths[key]

    def backing_of(self, path: str) -> str | None:
        if path not in self._below:
            vol = hv_storage.volume_by_path(self.hv, path)
            below = None
            if vol is not None:
                try:
                    below = xml_volume.volume_from_xml(vol.xml()).backing_path
                except KvmhubError:
                    below = None
            self._below[path] = below
        return self._below[path]

    def chain(self, path: str) -> list[str]:
        out = [path]
        while len(out) < _MAX_CHAIN and (below := self.backing_of(out[-1])) and below not in out:
            out.append(below)
        return out


def scan(hv: Hypervisor) -> Usage:
    """Read every domain's disks (persistent and, for running VMs, live definition) with their chains."""
    usage = Usage()
    chains = _Chains(hv)
    for dom in hv_domains.list_all(hv):
        disks = _VMDisks()
        try:
            xmls = [dom.xml(inactive=True)]
            if dom.is_active():
                xmls.append(dom.xml())
                usage.running.add(dom.name)
        except KvmhubError:
            continue  # the domain went away while we looked
        below: set[str] = set()
        for xml in xmls:
            refs, paths, below_paths = _disk_sources(xml)
            disks.refs |= refs
            disks.paths |= paths
            below |= below_paths
        for pool, volume in list(disks.refs):
            if (path := chains.volume_path(pool, volume)) is not None:
                disks.paths.add(path)
        disks.top = set(disks.paths)
        disks.paths |= below
        for path in list(disks.paths):
            disks.paths.update(chains.chain(path))
        usage.vms[dom.name] = disks
    return usage


def overlays_of(hv: Hypervisor, path: str) -> list[str]:
    """Volumes (as POOL/VOL) in any active pool whose backing file is ``path``."""
    found = []
    for pool in hv_storage.list_pools(hv):
        try:
            if not pool.is_active():
                continue
            for name in pool.volume_names():
                if xml_volume.volume_from_xml(pool.volume(name).xml()).backing_path == path:
                    found.append(f"{pool.name}/{name}")
        except KvmhubError:
            continue  # a pool or volume that vanished or cannot be read backs nothing we can see
    return sorted(found)
