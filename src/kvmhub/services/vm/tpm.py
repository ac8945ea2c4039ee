"""The emulated TPM of `create --tpm`: whether the host can give one, and its swtpm state, which `clone` copies."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from kvmhub.errors import Conflict, HostProblem
from kvmhub.hv import domcaps, host_root
from kvmhub.hv.connection import Hypervisor
from kvmhub.models import TPMSpec
from kvmhub.ops.actions import Action, Context, StepLog, register
from kvmhub.xml._util import Element
from kvmhub.xml.tpm import emulator_offered, parse_tpm

# TPM 2.0 on QEMU's CRB interface: what Windows 11 asks for, and what Linux's tpm_crb driver binds to
DEFAULT_TPM = TPMSpec(model="tpm-crb", backend="emulator", version="2.0")
SWTPM_DIR = "/var/lib/libvirt/swtpm"  # libvirt's swtpm_storage_dir on a privileged host
QEMU_CONF = "/etc/libvirt/qemu.conf"


def check_host(hv: Hypervisor, domain_type: str) -> None:
    """Raise HostProblem when the host's libvirt offers no emulated TPM 2.0 for ``domain_type`` VMs (swtpm
    missing); a driver that cannot tell (libvirt's test driver) passes."""
    caps = domcaps.domain_capabilities(hv, domain_type)
    if caps is None or emulator_offered(caps):
        return
    raise HostProblem(
        "this host cannot give the VM an emulated TPM 2.0 ({opt:tpm})",
        cause="libvirt found no swtpm on the host, or its QEMU lacks the TPM devices",
        hint="install swtpm and swtpm-tools on the host (`apt-get install swtpm swtpm-tools`) and restart "
             "libvirtd; or create the VM without {opt:tpm}",
    )


def state_dir(vm_uuid: str) -> str:
    """Where libvirt keeps the swtpm state of the VM with ``vm_uuid`` (on its host)."""
    return f"{SWTPM_DIR}/{vm_uuid}"


def has_state(vm_uuid: str) -> bool:
    """Whether the VM's emulated TPM has state on this host (it has run at least once)."""
    return os.path.isdir(host_root() + state_dir(vm_uuid))


def emulated(tree: Element) -> bool:
    """Whether a ``<domain>`` tree has a TPM that libvirt emulates with swtpm."""
    devices = tree.find("devices")
    found = parse_tpm(devices) if devices is not None else None
    return found is not None and found.backend == "emulator"


def copy_state(src_uuid: str, dst_uuid: str, undo: StepLog) -> None:
    """Copy the swtpm state of VM ``src_uuid`` to VM ``dst_uuid``, owners and modes kept (swtpm runs as its own
    user); the copy is removed on undo, and by libvirt when that VM is undefined."""
    src, dst = Path(host_root() + state_dir(src_uuid)), Path(host_root() + state_dir(dst_uuid))
    undo.add(f"remove {state_dir(dst_uuid)}", Action("tpm_state.remove", {"uuid": dst_uuid}))
    shutil.copytree(src, dst, symlinks=True)
    for there, _dirs, files in os.walk(src):
        for name in ["", *files]:
            old = Path(there, name)
            st = old.lstat()
            os.chown(dst / old.relative_to(src), st.st_uid, st.st_gid, follow_symlinks=False)
    undo.made(uuid=dst_uuid, inode=dst.stat().st_ino)


def write_state(vm_uuid: str, files: dict[str, bytes], undo: StepLog) -> None:
    """Make the swtpm state directory of VM ``vm_uuid`` holding ``files`` (by path inside it; checked by the
    caller), owned by the user libvirt runs swtpm as (removed on undo). Raises Conflict when it exists."""
    top = Path(host_root() + state_dir(vm_uuid))
    if os.path.lexists(top):
        raise Conflict(f"TPM state {state_dir(vm_uuid)} already exists", cause="left over from an earlier VM with "
                       "that UUID", hint=f"remove it (`rm -r {state_dir(vm_uuid)}`) if no VM uses it, or import "
                       "as a copy ({opt:as} NEWNAME)")
    top.parent.mkdir(parents=True, exist_ok=True)
    undo.add(f"remove {state_dir(vm_uuid)}", Action("tpm_state.remove", {"uuid": vm_uuid}))
    top.mkdir(0o700)
    undo.made(uuid=vm_uuid, inode=top.stat().st_ino)
    uid, gid = swtpm_owner()
    os.chown(top, uid, gid, follow_symlinks=False)
    for name, data in files.items():
        path = top / name
        if not path.parent.exists():
            path.parent.mkdir(0o700)
            os.chown(path.parent, uid, gid, follow_symlinks=False)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def swtpm_owner() -> tuple[int, int]:
    """(uid, gid) libvirt runs swtpm as on its host: ``swtpm_user``/``swtpm_group`` of its qemu.conf (``tss`` by
    default), looked up in the host's own passwd and group files; root's when they name no one there."""
    conf = _read(QEMU_CONF)
    user = _setting(conf, "swtpm_user") or "tss"
    group = _setting(conf, "swtpm_group") or "tss"
    return _lookup(_read("/etc/passwd"), user), _lookup(_read("/etc/group"), group)


def _read(path: str) -> str:
    try:
        return Path(host_root() + path).read_text(errors="replace")
    except OSError:
        return ""


def _setting(conf: str, key: str) -> str | None:
    found = re.search(rf'^[ \t]*{key}[ \t]*=[ \t]*"([^"\n]*)"', conf, re.MULTILINE)
    return found.group(1) if found else None


def _lookup(table: str, name: str) -> int:
    """The id of ``name`` in a passwd or group file (``+N`` is an id itself, as libvirt reads it); 0 if absent."""
    if name.startswith("+") and name[1:].isdigit():
        return int(name[1:])
    for line in table.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return 0


@register("tpm_state.remove")
def _remove_state(ctx: Context, p: dict[str, Any]) -> None:
    where = ctx.path(state_dir(p["uuid"]))
    try:
        st = os.lstat(where)
    except FileNotFoundError:
        return
    if p.get("inode") is not None and st.st_ino != p["inode"]:
        return  # made again since (libvirt, for a VM of that UUID): not the copy the step made
    shutil.rmtree(where)
