"""``<filesystem>``: a host directory shared with the guest (virtiofs or 9p), and the ``<memoryBacking>`` that
virtiofs needs (guest memory QEMU shares with virtiofsd)."""

from __future__ import annotations

from kvmhub.models.share import ShareSpec
from kvmhub.xml._util import Element, expect_root, make, parse, serialize, sub

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"

# <domain> children that come before <memoryBacking> in libvirt's own order
_BEFORE_BACKING = ("name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory",
                   "currentMemory")


def build_filesystem(share: ShareSpec) -> Element:
    """The ``<filesystem>`` element for ``share``: virtiofs runs QEMU's virtiofsd; 9p is QEMU's own server."""
    el = make("filesystem", {"type": "mount", "accessmode": "passthrough"})
    if share.mode == "virtiofs":
        sub(el, "driver", {"type": "virtiofs"})
        sub(el, "binary", {"path": VIRTIOFSD})
    sub(el, "source", {"dir": share.source})
    sub(el, "target", {"dir": share.tag})
    if share.readonly:
        sub(el, "readonly")
    return el


def filesystem_to_xml(share: ShareSpec) -> str:
    """The ``<filesystem>`` device XML for ``share``, as attachDevice takes it."""
    return serialize(build_filesystem(share))


def parse_filesystem(el: Element) -> ShareSpec | None:
    """A ``<filesystem type='mount'>`` as a share; None for other kinds (block devices, RAM, templates) or a
    definition kvmhub cannot describe (no source directory or tag)."""
    if (el.get("type") or "mount") != "mount":
        return None
    source, target, driver = el.find("source"), el.find("target"), el.find("driver")
    src, tag = (source.get("dir") if source is not None else None), (target.get("dir") if target is not None else None)
    if not src or not tag:
        return None
    mode = "virtiofs" if driver is not None and driver.get("type") == "virtiofs" else "9p"
    try:
        return ShareSpec.model_validate({"tag": tag, "source": src, "mode": mode,
                                         "readonly": el.find("readonly") is not None})
    except ValueError:
        return None  # a tag kvmhub would not make; listed by virsh, left alone here


def shares_of(root: Element) -> list[ShareSpec]:
    """The shares of a parsed ``<domain>``."""
    return [s for el in root.iterfind("devices/filesystem") if (s := parse_filesystem(el)) is not None]


def shares_from_xml(xml: str) -> list[ShareSpec]:
    """The shares in domain XML (kvmhub's or libvirt's ``dumpxml``)."""
    return shares_of(_domain(xml))


def has_shared_memory(xml: str) -> bool:
    """Whether the domain's memory is shared with other processes (``<access mode='shared'/>``), as virtiofs
    needs."""
    return _domain(xml).find("memoryBacking/access[@mode='shared']") is not None


def with_share(xml: str, share: ShareSpec) -> str:
    """Domain XML with ``share`` added, and for virtiofs the shared memory it needs; everything else of the
    definition is kept as it was."""
    root = _domain(xml)
    if share.mode == "virtiofs":
        _share_memory(root)
    devices = root.find("devices")
    if devices is None:
        devices = sub(root, "devices")
    found = devices.findall("filesystem")
    if found:
        found[-1].addnext(build_filesystem(share))
    else:
        devices.append(build_filesystem(share))
    return serialize(root)


def without_share(xml: str, tag: str) -> str:
    """Domain XML without the share tagged ``tag``; the memory stays shared (other devices may need it, and it
    costs nothing)."""
    root = _domain(xml)
    for el in root.iterfind("devices/filesystem"):
        share = parse_filesystem(el)
        if share is not None and share.tag == tag:
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)
    return serialize(root)


def share_element(xml: str, tag: str) -> str | None:
    """The ``<filesystem>`` of the share tagged ``tag`` as the domain XML has it (with its alias and address,
    so libvirt matches it for a detach), or None."""
    for el in _domain(xml).iterfind("devices/filesystem"):
        share = parse_filesystem(el)
        if share is not None and share.tag == tag:
            return serialize(el)
    return None


def _share_memory(root: Element) -> None:
    backing = root.find("memoryBacking")
    if backing is None:
        backing = make("memoryBacking")
        anchor = [el for el in root if el.tag in _BEFORE_BACKING]
        if anchor:
            anchor[-1].addnext(backing)
        else:
            root.insert(0, backing)
    if backing.find("source") is None and backing.find("hugepages") is None:
        sub(backing, "source", {"type": "memfd"})
    access = backing.find("access")
    if access is None:
        access = sub(backing, "access")
    access.set("mode", "shared")


def _domain(xml: str) -> Element:
    root = parse(xml, "domain")
    expect_root(root, "domain", "domain")
    return root
