"""A UEFI VM's NVRAM file (its firmware variables: boot entries, secure-boot keys) for clones and exports.

The file lives on the VM's host, outside any storage pool, so it is read and written among the host's
files (this machine or a test host); for a remote host it does not travel and libvirt makes the new
VM's from the firmware template at its first start. New files take libvirt's own name,
``<nvram dir>/<VM>_VARS.fd``, and go with the VM (`rm` undefines with the NVRAM).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kvmhub.errors import Conflict
from kvmhub.hv import host_root
from kvmhub.models.export import NVRAM_MAX_BYTES
from kvmhub.ops.actions import Action, StepLog
from kvmhub.reporting import Reporter
from kvmhub.xml._util import Element

NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
LIMIT = NVRAM_MAX_BYTES


def nvram_path(tree: Element) -> str | None:
    """The NVRAM file a ``<domain>`` names (``<os><nvram>`` text or its ``<source file>``), if any; for firmware
    libvirt autoselects (``<os firmware='efi'>``), whose definition names none until it starts, libvirt's own."""
    el = tree.find("os/nvram")
    if el is None:
        name = (tree.findtext("name") or "").strip()
        return new_path(name) if name and _autoselected_efi(tree) else None
    src = el.find("source")
    path = (src.get("file") if src is not None else el.text) or ""
    return path.strip() or None


def _autoselected_efi(tree: Element) -> bool:
    os_el = tree.find("os")
    return os_el is not None and os_el.get("firmware") == "efi"


def new_path(name: str, old: str | None = None) -> str:
    """libvirt's name for VM `name`'s NVRAM file, in the directory of `old` when given."""
    return os.path.join(os.path.dirname(old) if old else NVRAM_DIR, f"{name}_VARS.fd")


def clone_path(tree: Element, name: str) -> str | None:
    """The NVRAM path of `name`, a clone of the ``<domain>`` `tree`, when the source names one (copied or not)."""
    old = nvram_path(tree)
    return new_path(name, old) if old is not None else None


def clone_plan(tree: Element, name: str, *, local: bool, report: Reporter) -> tuple[str, str] | None:
    """(the source's NVRAM file, the clone's) when there is a file to copy. Raises Conflict when the clone's
    file exists already."""
    old = nvram_path(tree)
    if old is None:
        return None  # libvirt names it and makes it from the template
    new = new_path(name, old)
    if not local:
        report.warn("the NVRAM (UEFI variables) of a VM on another host is not copied; the clone's starts "
            "from the firmware's template")
        return None
    if not os.path.exists(host_root() + old):
        return None  # never started: libvirt makes the clone's from the template too
    _require_free(new)
    return old, new


def _require_free(path: str) -> None:
    if os.path.lexists(host_root() + path):
        raise Conflict(f"NVRAM file {path} already exists", cause="left over from an earlier VM of that name",
                       hint=f"remove it (`rm {path}`) if no VM uses it, or pick another name")


def copy(old: str, new: str, undo: StepLog) -> None:
    """Copy host file `old` to `new` (removed on undo)."""
    _require_free(new)
    undo.add(f"remove {new}", Action("file.remove", {"path": new}))
    shutil.copyfile(host_root() + old, host_root() + new)
    undo.made(inode=os.stat(host_root() + new).st_ino)


def read(path: str) -> bytes | None:
    """The bytes of host NVRAM file `path` (None when it was never made)."""
    seen = Path(host_root() + path)
    if not seen.is_file():
        return None
    with open(seen, "rb") as fh:
        return fh.read(LIMIT)


def write(path: str, data: bytes, undo: StepLog) -> None:
    """A new host file `path` holding `data` (removed on undo); Conflict when it exists."""
    _require_free(path)
    seen = Path(host_root() + path)
    seen.parent.mkdir(parents=True, exist_ok=True)
    undo.add(f"remove {path}", Action("file.remove", {"path": path}))
    fd = os.open(seen, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    undo.made(inode=os.fstat(fd).st_ino)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def remove(path: str) -> None:
    """Remove host file `path` if it is there."""
    Path(host_root() + path).unlink(missing_ok=True)


__all__ = ["NVRAM_DIR", "clone_path", "clone_plan", "copy", "new_path", "nvram_path", "read",
           "remove", "write"]
