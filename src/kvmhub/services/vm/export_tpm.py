"""An emulated TPM's swtpm state in an export archive: read from the VM's state directory on export, checked
as untrusted input and written under the imported VM's UUID on import (members ``tpm/<path>``, after the NVRAM).

Only a host whose files kvmhub reaches (this machine, a test host) gives or takes the state; elsewhere, or when
the VM never ran (no state yet), the imported VM's TPM starts empty and the command says so."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.models.export import TPM_FILE_MAX_BYTES, TPM_MAX_FILES, ExportTpm, ExportTpmFile
from kvmhub.ops.actions import StepLog
from kvmhub.reporting import Reporter
from kvmhub.services.vm import tpm as vm_tpm
from kvmhub.xml._util import Element

State = list[tuple[ExportTpmFile, bytes]]


def read_state(hv: Hypervisor, tree: Element, vm_uuid: str, report: Reporter) -> State:
    """The swtpm state files of the VM (``<domain>`` ``tree``) with their manifest entries; empty, with a
    warning, when it has no emulated TPM state kvmhub can read. Raises Conflict for state beyond the bounds an
    import accepts (more than TPM_MAX_FILES files, a file over TPM_FILE_MAX_BYTES)."""
    if not vm_tpm.emulated(tree):
        return []
    if not host_files_here(hv.uri):
        report.warn("the TPM state of a VM on another host is not exported; the imported VM's TPM starts empty")
        return []
    top = Path(host_root() + vm_tpm.state_dir(vm_uuid))
    if not top.is_dir():
        report.warn("the VM's TPM has no state yet (it never ran); the imported VM's TPM starts empty")
        return []
    out: State = []
    for there, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = Path(there, name)
            rel = str(path.relative_to(top))
            if name.startswith(".") or not path.is_file() or path.is_symlink():
                continue  # swtpm's lock file; nothing but regular files is state
            if len(out) >= TPM_MAX_FILES or path.stat().st_size > TPM_FILE_MAX_BYTES:
                raise Conflict(f"the TPM state of the VM ({vm_tpm.state_dir(vm_uuid)}) is larger than an export "
                               f"carries ({TPM_MAX_FILES} files of {TPM_FILE_MAX_BYTES} bytes at most)",
                               hint="check that directory: swtpm keeps one state file of tens of KiB")
            data = path.read_bytes()
            out.append((ExportTpmFile(name=rel, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()), data))
    if not out:
        report.warn("the VM's TPM has no state yet (it never ran); the imported VM's TPM starts empty")
    return out


def manifest_of(state: State) -> ExportTpm | None:
    """The manifest's ``tpm`` entry for ``state`` (None when there is none)."""
    return ExportTpm(files=[f for f, _data in state]) if state else None


def add_members(tar: tarfile.TarFile, state: State) -> None:
    """Write the state files as archive members, in the manifest's order."""
    for entry, data in state:
        info = tarfile.TarInfo(entry.member)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))


def read_members(tar: tarfile.TarFile, tpm: ExportTpm, tree: Element,
                 refuse: Callable[[str], InvalidInput]) -> dict[str, bytes]:
    """The state files the manifest names, read from the next members in its order: each must be a regular
    file of that name, size and checksum (names are checked by the manifest's model: no paths out), and the
    archived definition (``tree``) must have an emulated TPM."""
    if not vm_tpm.emulated(tree):
        raise refuse("it holds TPM state for a VM whose definition has no emulated TPM")
    out: dict[str, bytes] = {}
    for entry in tpm.files:
        member = tar.next()
        if member is None or member.name != entry.member or not member.isreg() or member.size != entry.bytes:
            raise refuse(f"its {entry.member} is missing or not what its manifest says")
        if entry.name in out:
            raise refuse(f"member {entry.member!r} appears twice")
        fh = tar.extractfile(member)
        assert fh is not None
        data = fh.read(TPM_FILE_MAX_BYTES + 1)
        if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise refuse(f"{entry.member} does not match its checksum")
        out[entry.name] = data
    return out


def restore(hv: Hypervisor, vm_uuid: str, files: dict[str, bytes], undo: StepLog, report: Reporter) -> bool:
    """Write the archived state as the TPM state of VM ``vm_uuid`` (removed on undo); False, with a warning,
    when the host's files are out of reach. Raises Conflict when that VM has TPM state already."""
    if not files:
        return False
    if not host_files_here(hv.uri):
        report.warn("the archived TPM state is not written on another host; the imported VM's TPM starts empty")
        return False
    report.phase("writing the TPM state")
    vm_tpm.write_state(vm_uuid, files, undo)
    return True


__all__ = ["State", "add_members", "manifest_of", "read_members", "read_state", "restore"]
