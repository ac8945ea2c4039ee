"""An existing domain's definition given a new identity, edited in place: everything else is kept.

Clone, import and restore-as-new write the source domain's own XML back with only what must differ
changed, so what kvmhub does not model (UEFI loader and NVRAM, ``<smm>``, TPM, video, host devices,
``<filesystem>`` shares, tuning, other tools' metadata, device order) survives. What changes:

* ``<name>``; ``<uuid>`` (a new one, or dropped so libvirt picks one); ``<genid>`` gets a new value;
* every ``<interface>`` gets a new ``<mac>`` (and optionally another network; a filter's ``IP`` parameter
  follows the new address or goes);
* disk sources found in the caller's map (old file path or ``pool/volume`` -> new file or volume), their
  ``<backingStore>`` dropped (the new volume's chain is not the old one's) and format set;
* the serial/console ``<log file>``, the ``<os><nvram>`` file, direct-boot kernel and initrd paths;
* kvmhub's ``<kvmhub:vm>`` metadata element replaced; other namespaces' metadata are untouched.

Host-bound identity goes: the root's ``id``, graphics ports libvirt picked (``autoport``, back to ``-1``), labels of
dynamic ``<seclabel>`` (libvirt assigns new ones), and ``<alias>`` names libvirt assigned (user aliases,
``ua-*``, are per domain and kept).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from kvmhub.models import KvmhubMeta
from kvmhub.xml._util import Element, expect_root, parse, serialize
from kvmhub.xml.metadata import ROOT_TAG, build_metadata

_HEAD_ORDER = ("name", "uuid", "genid", "title", "description")
_SOURCE_ATTRS = ("file", "dev", "dir", "pool", "volume", "name", "protocol", "mode", "index", "type")


@dataclass(frozen=True)
class NewSource:
    """Where a disk now lives: a file ``path``, or ``pool`` + ``volume``; ``format`` its driver type."""

    path: str | None = None
    pool: str | None = None
    volume: str | None = None
    format: str | None = None


@dataclass
class Rewrite:
    """What to change in a domain; what is left None is kept as it is (except host-bound identity)."""

    name: str
    uuid: str | None = None  # None: no <uuid>, libvirt makes one
    mac: Callable[[int, str | None], str] | None = None  # (NIC index, old MAC) -> new MAC; None keeps MACs
    network: str | None = None  # every NIC on this libvirt network instead
    filter_ips: Mapping[str, str] = field(default_factory=dict)  # new MAC -> its IP for the filter's IP param
    disks: Mapping[str, NewSource] = field(default_factory=dict)  # old path or pool/volume -> new source
    serial_log: str | None = None
    nvram: str | None = None
    boot_files: Mapping[str, str] = field(default_factory=dict)  # old kernel/initrd path -> new path
    meta: KvmhubMeta | None = None
    domain_type: str | None = None
    local_graphics: bool = False  # graphics listen on 127.0.0.1 only (the old host's addresses mean nothing)


def source_key(disk: Element) -> str | None:
    """How a ``<disk>``'s source is named in :attr:`Rewrite.disks`: its path, or ``pool/volume``."""
    src = disk.find("source")
    if src is None:
        return None
    if src.get("pool") and src.get("volume"):
        return f"{src.get('pool')}/{src.get('volume')}"
    return src.get("file") or src.get("dev") or src.get("dir")


def rewrite_domain(xml: str, change: Rewrite) -> str:
    """The domain `xml` with `change` applied and host-bound identity removed; everything else kept."""
    root = parse(xml, "domain")
    expect_root(root, "domain", "domain")
    rewrite_tree(root, change)
    return serialize(root)


def rewrite_tree(root: Element, change: Rewrite) -> None:
    """:func:`rewrite_domain` on a parsed ``<domain>``, in place."""
    _drop(root, "id")
    if change.domain_type is not None:
        root.set("type", change.domain_type)
    _head(root, "name").text = change.name
    uuid_el = root.find("uuid")
    if change.uuid is None:
        if uuid_el is not None:
            root.remove(uuid_el)
    else:
        _head(root, "uuid").text = change.uuid
    genid = root.find("genid")
    if genid is not None:
        genid.text = str(uuidlib.uuid4())
    if change.meta is not None:
        _set_meta(root, change.meta)
    _os(root, change)
    devices = root.find("devices")
    if devices is not None:
        _interfaces(devices, change)
        _disks(devices, change.disks)
        _logs(devices, change)
        _graphics(devices, change.local_graphics)
    _host_identity(root)


def _head(root: Element, tag: str) -> Element:
    """The head element `tag` (name, uuid ...), made at its place in libvirt's order when missing."""
    found = root.find(tag)
    if found is not None:
        return found
    el = etree.Element(tag)
    before = [t for t in _HEAD_ORDER[: _HEAD_ORDER.index(tag)] if root.find(t) is not None]
    if before:
        anchor = root.find(before[-1])
        assert anchor is not None
        anchor.addnext(el)
    else:
        root.insert(0, el)
    el.tail = root.text
    return el


def _set_meta(root: Element, meta: KvmhubMeta) -> None:
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        anchor = next((root.find(t) for t in reversed(_HEAD_ORDER) if root.find(t) is not None), None)
        if anchor is None:
            root.insert(0, metadata)
        else:
            anchor.addnext(metadata)
    new = build_metadata(meta)
    old = metadata.find(ROOT_TAG)
    if old is None:
        metadata.append(new)
    else:
        new.tail = old.tail
        metadata.replace(old, new)


def _os(root: Element, change: Rewrite) -> None:
    os_el = root.find("os")
    if os_el is None:
        return
    nvram = os_el.find("nvram")
    if nvram is not None and change.nvram is not None:
        source = nvram.find("source")
        if source is not None and source.get("file"):
            source.set("file", change.nvram)
        else:
            nvram.text = change.nvram
    for tag in ("kernel", "initrd"):
        el = os_el.find(tag)
        if el is not None and el.text is not None and el.text in change.boot_files:
            el.text = change.boot_files[el.text]


def _interfaces(devices: Element, change: Rewrite) -> None:
    for n, nic in enumerate(devices.iterfind("interface")):
        mac_el = nic.find("mac")
        old = None if mac_el is None else mac_el.get("address")
        if change.network is not None:
            nic.set("type", "network")
            source = nic.find("source")
            if source is None:
                source = etree.Element("source")
                if mac_el is not None:
                    mac_el.addnext(source)
                else:
                    nic.insert(0, source)
            for attr in list(source.attrib):
                del source.attrib[attr]
            for child in list(source):
                source.remove(child)
            source.set("network", change.network)
            target = nic.find("target")
            if target is not None:
                nic.remove(target)
        if change.mac is None:
            continue
        new = change.mac(n, old)
        if mac_el is None:
            mac_el = etree.Element("mac")
            nic.insert(0, mac_el)
        mac_el.set("address", new)
        _filter_ip(nic, change.filter_ips.get(new))


def _filter_ip(nic: Element, ip: str | None) -> None:
    ref = nic.find("filterref")
    if ref is None:
        return
    for param in ref.findall("parameter"):
        if param.get("name") == "IP":
            ref.remove(param)
    if ip is not None:
        etree.SubElement(ref, "parameter", {"name": "IP", "value": ip})


def _disks(devices: Element, sources: Mapping[str, NewSource]) -> None:
    for disk in devices.iterfind("disk"):
        key = source_key(disk)
        if key is None or key not in sources:
            continue
        new = sources[key]
        src = disk.find("source")
        assert src is not None
        for attr in _SOURCE_ATTRS:
            _drop(src, attr)
        for host in src.findall("host"):
            src.remove(host)
        for auth in [*src.findall("auth"), *disk.findall("auth")]:
            auth.getparent().remove(auth)  # type: ignore[union-attr]
        if new.pool and new.volume:
            disk.set("type", "volume")
            src.set("pool", new.pool)
            src.set("volume", new.volume)
        else:
            disk.set("type", "file")
            src.set("file", new.path or "")
        for store in disk.findall("backingStore"):
            disk.remove(store)
        if new.format is not None:
            driver = disk.find("driver")
            if driver is None:
                driver = etree.Element("driver", {"name": "qemu"})
                disk.insert(0, driver)
            driver.set("type", new.format)


def _logs(devices: Element, change: Rewrite) -> None:
    if change.serial_log is None:
        return
    renamed: dict[str, str] = {}
    stem, ext = os.path.splitext(change.serial_log)
    for log in [*devices.iterfind("serial/log"), *devices.iterfind("console/log")]:
        old = log.get("file")
        if old is None:
            continue
        if old not in renamed:
            renamed[old] = change.serial_log if not renamed else f"{stem}-{len(renamed)}{ext}"
        log.set("file", renamed[old])


def _graphics(devices: Element, local: bool) -> None:
    for g in devices.iterfind("graphics"):
        if g.get("autoport") == "yes":
            for attr in ("port", "tlsPort"):
                if g.get(attr) not in (None, "-1"):
                    g.set(attr, "-1")  # the port libvirt picked on the old host
            if g.get("websocket") not in (None, "-1"):
                g.set("websocket", "-1")
        if local and (g.get("listen") is not None or g.find("listen") is not None):
            if g.get("listen") is not None:
                g.set("listen", "127.0.0.1")
            for listen in g.iterfind("listen"):
                if listen.get("type") == "address" and listen.get("address") is not None:
                    listen.set("address", "127.0.0.1")
                elif listen.get("type") == "network":
                    _drop(listen, "network")
                    _drop(listen, "address")
                    listen.set("type", "address")
                    listen.set("address", "127.0.0.1")


def _drop(el: Element, *attrs: str) -> None:
    for attr in attrs:
        if attr in el.attrib:
            del el.attrib[attr]


def _host_identity(root: Element) -> None:
    for label in [*root.iterfind("seclabel[@type='dynamic']/label"),
                  *root.iterfind("seclabel[@type='dynamic']/imagelabel")]:
        label.getparent().remove(label)  # type: ignore[union-attr]
    for alias in root.findall("devices/*/alias"):
        if not (alias.get("name") or "").startswith("ua-"):
            alias.getparent().remove(alias)  # type: ignore[union-attr]


__all__ = ["NewSource", "Rewrite", "rewrite_domain", "rewrite_tree", "source_key"]
