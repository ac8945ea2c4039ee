"""Backups ⇄ libvirt ``<domainbackup>`` and ``<domaincheckpoint>`` XML.

A push-mode backup asks QEMU to copy each disk into a qcow2 target file: all of it (full) or only the
clusters changed since a checkpoint (incremental, from the checkpoint's dirty bitmaps). Every backup also
makes a new checkpoint, the starting point of the next incremental one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from kvmhub.models.backup import CheckpointInfo
from kvmhub.xml._util import child_text, expect_root, make, parse, serialize, sub


def backup_to_xml(targets: Mapping[str, str], skip: list[str], *, incremental: str | None = None) -> str:
    """The ``<domainbackup mode='push'>`` copying disk target → qcow2 file, leaving the `skip` disks out."""
    root = make("domainbackup", {"mode": "push"})
    if incremental:
        sub(root, "incremental", text=incremental)
    disks = sub(root, "disks")
    for target, path in targets.items():
        el = sub(disks, "disk", {"name": target, "backup": "yes", "type": "file"})
        sub(el, "target", {"file": path})
        sub(el, "driver", {"type": "qcow2"})
    for target in skip:
        sub(disks, "disk", {"name": target, "backup": "no"})
    return serialize(root)


def checkpoint_to_xml(name: str, bitmaps: list[str], skip: list[str], *, description: str | None = None) -> str:
    """The ``<domaincheckpoint>`` tracking changes of the `bitmaps` disks from now on."""
    root = make("domaincheckpoint")
    sub(root, "name", text=name)
    if description:
        sub(root, "description", text=description)
    disks = sub(root, "disks")
    for target in bitmaps:
        sub(disks, "disk", {"name": target, "checkpoint": "bitmap"})
    for target in skip:
        sub(disks, "disk", {"name": target, "checkpoint": "no"})
    return serialize(root)


def checkpoint_from_xml(xml: str) -> CheckpointInfo:
    """Read libvirt's checkpoint XML (``getXMLDesc``)."""
    root = parse(xml, "checkpoint")
    expect_root(root, "domaincheckpoint", "checkpoint")
    created = child_text(root, "creationTime")
    when = None
    if created and created.isdigit():
        when = dt.datetime.fromtimestamp(int(created), dt.UTC).isoformat()
    return CheckpointInfo(
        name=child_text(root, "name") or "",
        parent=child_text(root, "parent/name") or None,
        created=when,
        description=child_text(root, "description") or None,
        disks={el.get("name", ""): el.get("checkpoint", "no") for el in root.iterfind("disks/disk")},
    )
