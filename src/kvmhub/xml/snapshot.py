"""Snapshots ⇄ libvirt ``<domainsnapshot>`` XML, and the disk edits an external revert or merge needs.

Builders return XML text for ``snapshotCreateXML``; readers take libvirt's ``getXMLDesc`` output. The
redefinition helpers rewrite libvirt's own snapshot XML (parent, overlay files, the frozen disk sources
in the embedded ``<domain>``) so kvmhub can re-register a snapshot after moving its files with block jobs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kvmhub import models  # its models load on first use: telling a snapshot's kind needs none
from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, child_text, expect_root, make, parse, serialize, sub

if TYPE_CHECKING:
    from kvmhub.models.snapshot import SnapshotDisk, SnapshotInfo, SnapshotSpec
    from kvmhub.models.vm import DiskSource

_DISK_MODES = frozenset({"internal", "external", "no"})
_ABSENT = object()


def snapshot_to_xml(spec: SnapshotSpec) -> str:
    """The ``<domainsnapshot>`` asking libvirt for ``spec``. Raises InvalidInput on inconsistent memory settings."""
    if spec.memory == "external" and not spec.memory_file:
        raise InvalidInput(f"snapshot {spec.name}: an external memory snapshot needs a file")
    if spec.memory != "external" and spec.memory_file:
        raise InvalidInput(f"snapshot {spec.name}: a memory file is only for external memory snapshots")
    root = make("domainsnapshot")
    sub(root, "name", text=spec.name)
    if spec.description:
        sub(root, "description", text=spec.description)
    sub(root, "memory", {"snapshot": spec.memory, "file": spec.memory_file})
    if spec.disks:
        disks = sub(root, "disks")
        for disk in spec.disks:
            el = sub(disks, "disk", {"name": disk.target, "snapshot": disk.snapshot})
            if disk.snapshot == "external":
                if disk.format:
                    sub(el, "driver", {"type": disk.format})
                if disk.file:
                    sub(el, "source", {"file": disk.file})
    return serialize(root)


def _created(root: Element) -> str | None:
    text = child_text(root, "creationTime")
    if not text:
        return None
    try:
        return dt.datetime.fromtimestamp(int(text), dt.UTC).isoformat()
    except ValueError:
        return None


def _disk_mode(el: Element) -> str:
    mode = el.get("snapshot") or "no"
    return mode if mode in _DISK_MODES else "no"


def _memory_mode(root: Element) -> str:
    memory_el = root.find("memory")
    return memory_el.get("snapshot", "no") if memory_el is not None else "no"


def _external(root: Element) -> bool:
    return _memory_mode(root) == "external" or any(_disk_mode(el) == "external" for el in root.iterfind("disks/disk"))


def snapshot_kind(xml: str) -> Literal["internal", "external"]:
    """A snapshot's kind from libvirt's snapshot XML (as :func:`snapshot_from_xml` tells it, without its models)."""
    root = parse(xml, "snapshot")
    expect_root(root, "domainsnapshot", "snapshot")
    return "external" if _external(root) else "internal"


def _snapshot_disks(root: Element) -> list[SnapshotDisk]:
    out = []
    for el in root.iterfind("disks/disk"):
        mode = _disk_mode(el)
        source = el.find("source")
        out.append(
            models.SnapshotDisk(
                target=el.get("name") or "",
                snapshot=mode,  # type: ignore[arg-type]
                file=None if source is None else source.get("file"),
                format=el.find("driver").get("type") if el.find("driver") is not None else None,  # type: ignore[union-attr]
            )
        )
    return out


@dataclass(frozen=True)
class DomainDisk:
    """What snapshot planning needs to know about one disk of a domain."""

    target: str
    device: str
    format: str | None
    readonly: bool
    source: DiskSource | None


def domain_disks(domain_xml: str) -> list[DomainDisk]:
    """The disks of a domain definition, in device order."""
    root = parse(domain_xml, "domain")
    expect_root(root, "domain", "domain")
    sources = disk_sources(root)
    out = []
    for el in root.iterfind("devices/disk"):
        target = el.find("target")
        dev = target.get("dev", "") if target is not None else ""
        driver = el.find("driver")
        out.append(
            DomainDisk(
                target=dev,
                device=el.get("device", "disk"),
                format=driver.get("type") if driver is not None else None,
                readonly=el.find("readonly") is not None,
                source=sources.get(dev),
            )
        )
    return out


def uses_pflash(domain_xml: str) -> bool:
    """True for UEFI guests whose firmware variables live in pflash (QEMU cannot snapshot them internally)."""
    root = parse(domain_xml, "domain")
    loader = root.find("os/loader")
    return (loader is not None and loader.get("type") == "pflash") or root.find("os/nvram") is not None or (
        root.find("os").get("firmware") == "efi" if root.find("os") is not None else False  # type: ignore[union-attr]
    )


def disk_sources(domain: Element) -> dict[str, DiskSource]:
    """Target → source of every disk with a file or volume source in a ``<domain>`` element."""
    out: dict[str, DiskSource] = {}
    for el in domain.iterfind("devices/disk"):
        target = el.find("target")
        source = el.find("source")
        if target is None or source is None or not target.get("dev"):
            continue
        kind = el.get("type", "file")
        if kind == "volume" and source.get("pool") and source.get("volume"):
            out[target.get("dev", "")] = models.DiskSource(pool=source.get("pool"), volume=source.get("volume"))
        elif kind in ("file", "block") and (source.get("file") or source.get("dev")):
            out[target.get("dev", "")] = models.DiskSource(path=source.get("file") or source.get("dev"))
    return out


def snapshot_from_xml(xml: str, *, vm: str, current: bool = False, children: list[str] | None = None) -> SnapshotInfo:
    """Read libvirt's snapshot XML. ``kind`` is external when any disk or the memory is external."""
    root = parse(xml, "snapshot")
    expect_root(root, "domainsnapshot", "snapshot")
    disks = _snapshot_disks(root)
    memory_el = root.find("memory")
    memory_mode = _memory_mode(root)
    memory_file = memory_el.get("file") if memory_el is not None else None
    state = child_text(root, "state") or ""
    external = _external(root)
    frozen: dict[str, DiskSource] = {}
    domain = root.find("domain")
    if external and domain is not None:
        external_targets = {d.target for d in disks if d.snapshot == "external"}
        frozen = {t: s for t, s in disk_sources(domain).items() if t in external_targets}
    return models.SnapshotInfo(
        vm=vm,
        name=child_text(root, "name") or "",
        kind="external" if external else "internal",
        description=child_text(root, "description") or None,
        created=_created(root),
        state=state,
        parent=child_text(root, "parent/name") or None,
        children=sorted(children or []),
        current=current,
        # an internal snapshot of a running VM always carries its memory (libvirt reports memory=no for disk-only)
        memory=memory_mode in ("internal", "external") and state not in ("shutoff", "disk-snapshot"),
        memory_file=memory_file,
        disks=disks,
        frozen=frozen,
    )


def snapshot_domain_xml(xml: str) -> str:
    """The ``<domain>`` embedded in a snapshot: the VM as it was when the snapshot was taken."""
    root = parse(xml, "snapshot")
    expect_root(root, "domainsnapshot", "snapshot")
    domain = root.find("domain")
    if domain is None:
        raise InvalidInput("the snapshot XML holds no domain definition")
    return serialize(domain)


def redefine_xml(
    xml: str,
    *,
    parent: str | object | None = _ABSENT,
    overlays: Mapping[str, str] | None = None,
    frozen: Mapping[str, str] | None = None,
) -> str:
    """libvirt's snapshot XML with a new parent (None = a root), overlay files and/or frozen disk files.

    ``overlays`` maps disk target → the overlay that now takes the writes made after the snapshot;
    ``frozen`` maps disk target → the file now holding the disk as it was at the snapshot.
    """
    root = parse(xml, "snapshot")
    expect_root(root, "domainsnapshot", "snapshot")
    if parent is not _ABSENT:
        old = root.find("parent")
        if old is not None:
            root.remove(old)
        if parent is not None:
            if not isinstance(parent, str):
                raise InvalidInput("a snapshot parent is a name")
            el = make("parent")
            sub(el, "name", text=parent)
            name = root.find("name")
            root.insert(root.index(name) + 1 if name is not None else 0, el)
    for target, path in (overlays or {}).items():
        disk = root.find(f"disks/disk[@name='{_safe_target(target)}']")
        if disk is None:
            raise InvalidInput(f"the snapshot has no disk {target}")
        source = disk.find("source")
        if source is None:
            source = sub(disk, "source")
        source.attrib.clear()
        source.set("file", path)
        disk.set("type", "file")
    domain = root.find("domain")
    if frozen and domain is not None:
        _retarget(domain, frozen)
    return serialize(root)


def retarget_domain_disks(domain_xml: str, files: Mapping[str, str]) -> str:
    """A domain definition with the named disks pointing at new qcow2 files (their backing chains dropped)."""
    root = parse(domain_xml, "domain")
    expect_root(root, "domain", "domain")
    _retarget(root, files)
    return serialize(root)


def _safe_target(target: str) -> str:
    if not target.isalnum():
        raise InvalidInput(f"invalid disk target {target!r}")
    return target


def _retarget(domain: Element, files: Mapping[str, str]) -> None:
    for target, path in files.items():
        disk = domain.find(f"devices/disk/target[@dev='{_safe_target(target)}']/..")
        if disk is None:
            raise InvalidInput(f"the VM has no disk {target}")
        disk.set("type", "file")
        for tag in ("source", "backingStore"):
            for el in disk.findall(tag):
                disk.remove(el)
        source = make("source", {"file": path})
        driver = disk.find("driver")
        disk.insert(disk.index(driver) + 1 if driver is not None else 0, source)
        if driver is not None:
            driver.set("type", "qcow2")
