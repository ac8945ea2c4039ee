"""The emulated TPM of `create --tpm`: whether the host can give one, and its swtpm state, which `clone` copies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from kvmhub.errors import HostProblem
from kvmhub.hv import domcaps, host_root
from kvmhub.hv.connection import Hypervisor
from kvmhub.models import TPMSpec
from kvmhub.ops.actions import Action, Context, StepLog, register
from kvmhub.xml._util import Element
from kvmhub.xml.tpm import emulator_offered, parse_tpm

# TPM 2.0 on QEMU's CRB interface: what Windows 11 asks for, and what Linux's tpm_crb driver binds to
DEFAULT_TPM = TPMSpec(model="tpm-crb", backend="emulator", version="2.0")
SWTPM_DIR = "/var/lib/libvirt/swtpm"  # libvirt's swtpm_storage_dir on a privileged host


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
