"""``<volume>``: storage volumes (disk images) inside a pool."""

from __future__ import annotations

from dataclasses import dataclass

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import child_text, expect_root, make, parse, scaled_bytes, serialize, sub


@dataclass(frozen=True)
class VolumeFacts:
    """The fields kvmhub reads from a volume's XML."""

    name: str
    capacity_bytes: int
    format: str | None = None
    allocation_bytes: int | None = None
    key: str | None = None
    path: str | None = None
    backing_path: str | None = None
    backing_format: str | None = None


def volume_xml(
    name: str,
    capacity_bytes: int,
    format: str,
    backing_path: str | None = None,
    backing_format: str | None = None,
    *,
    encryption_secret: str | None = None,
) -> str:
    """XML for ``createXML``: a new volume, optionally a copy-on-write overlay of ``backing_path``.

    Raises InvalidInput for a negative capacity or a backing file without its format (probing a backing
    file's format is unsafe, so libvirt and qemu-img require it). ``encryption_secret`` (the UUID of a
    libvirt passphrase secret) makes a LUKS-encrypted qcow2.
    """
    if capacity_bytes < 0:
        raise InvalidInput(f"volume {name!r}: capacity {capacity_bytes} is negative")
    if (backing_path is None) != (backing_format is None):
        raise InvalidInput(
            f"volume {name!r}: a backing file needs both its path and its format",
            hint="pass backing_path and backing_format together, e.g. format 'qcow2'",
        )
    root = make("volume")
    sub(root, "name", text=name)
    sub(root, "capacity", {"unit": "bytes"}, text=str(capacity_bytes))
    # Without <allocation> libvirt preallocates the full capacity; 0 keeps the file sparse.
    sub(root, "allocation", {"unit": "bytes"}, text="0")
    target = sub(root, "target")
    sub(target, "format", {"type": format})
    if format == "qcow2":
        # qcow2 v3: v2 (libvirt's default) cannot hold the dirty bitmaps incremental backups need
        sub(target, "compat", text="1.1")
    if encryption_secret is not None:
        if format != "qcow2":
            raise InvalidInput(f"volume {name!r}: only qcow2 volumes can be encrypted", hint="use format qcow2")
        enc = sub(target, "encryption", {"format": "luks"})
        sub(enc, "secret", {"type": "passphrase", "uuid": encryption_secret})
    if backing_path is not None:
        backing = sub(root, "backingStore")
        sub(backing, "path", text=backing_path)
        sub(backing, "format", {"type": backing_format})
    return serialize(root)


def volume_from_xml(xml: str) -> VolumeFacts:
    """Read a volume's XML (``virStorageVol.XMLDesc``) into its basic fields.

    Raises InvalidInput if the XML is malformed, not a volume, or has no readable capacity.
    """
    root = parse(xml, "volume")
    expect_root(root, "volume", "volume")
    capacity = root.find("capacity")
    if capacity is None:
        raise InvalidInput("cannot read the volume XML", cause="it has no <capacity>")
    allocation = root.find("allocation")
    fmt = root.find("target/format")
    backing_fmt = root.find("backingStore/format")
    return VolumeFacts(
        name=child_text(root, "name") or "",
        capacity_bytes=scaled_bytes(capacity, "the volume capacity", "bytes"),
        format=fmt.get("type") if fmt is not None else None,
        allocation_bytes=(
            scaled_bytes(allocation, "the volume allocation", "bytes") if allocation is not None else None
        ),
        key=child_text(root, "key"),
        path=child_text(root, "target/path"),
        backing_path=child_text(root, "backingStore/path"),
        backing_format=backing_fmt.get("type") if backing_fmt is not None else None,
    )
