"""Removing a VM, as a roll-forward Operation.

Everything ``rm`` will do is worked out first and journalled: kill, drop port forwards, undefine, release each
reservation, delete each volume kvmhub made for the VM that nothing else uses, release frozen bases, delete the keys
of deleted encrypted disks, remove the serial log kvmhub configured. Then each step runs and is marked done. If
the process dies halfway, the next kvmhub process finishes the list, so a VM is never left half-removed (no
reservation or volume orphaned behind an undefined domain).
"""

from __future__ import annotations

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.hv.connection import host_root
from kvmhub.models import Recovery, VMSpec
from kvmhub.ops import actions
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import owners, undo_actions
from kvmhub.services.storage import bases
from kvmhub.services.storage import usage as storage_usage
from kvmhub.services.vm import lifecycle as vms
from kvmhub.services.vm.create import SERIAL_LOG_DIR
from kvmhub.xml._util import parse
from kvmhub.xml.domain import domain_from_xml, domain_is_managed

BASES = "frozen bases no other disk uses"


def remove(hv: Hypervisor, name: str, *, keep_disks: bool = False, report: Reporter = QUIET) -> list[str]:
    """Kill if running, undefine, and delete the volumes kvmhub made for it (never the image).

    Returns what was removed. Raises NotFound when there is no such VM.
    """
    dom = vms.get(hv, name)
    with Operation(hv, "vm.rm", name, locks=[LockSpec("vm", name)], report=report, recovery=Recovery.FORWARD) as op:
        dom = vms.get(hv, name)  # again under the lock
        spec = domain_from_xml(dom.xml(inactive=True))
        uuid = dom.uuid
        op.forward(f"kill VM {name}", undo_actions.destroy_domain(uuid, name))
        if spec.meta.forwards and hv.is_local:
            op.forward(f"port forwards of {name}", undo_actions.drop_forwards(name))
        op.forward(f"definition of {name}", undo_actions.undefine_domain(uuid, name))
        for nic in spec.nics:
            if nic.network and nic.mac:
                op.forward(f"reservation of {nic.mac} on {nic.network}", undo_actions.release_lease(nic.network,
                                                                                                    nic.mac))
        bases: dict[str, str] = {}
        if keep_disks:
            for secret in spec.meta.owned_secrets:
                report.phase(f"kept the key of its encrypted disk in libvirt secret {secret}")
        else:
            bases = _plan_owned(hv, op, spec, report)
        for log in _own_logs(hv, spec, domain_is_managed(dom.xml(inactive=True))):
            op.forward(f"log {log}", undo_actions.remove_file(log))
        removed: list[str] = []

        def failed(what: str, exc: KvmhubError) -> None:
            report.warn(f"could not remove {what}: {exc.message}")

        op.run_forward(actions.Context(hv, host_root()), failed)
        owners.forget(uuid)
        removed = [d for d in op.done_steps() if not d.startswith(("kill VM", "definition of", BASES))]
        removed += [ref for path, ref in bases.items() if hv_storage.volume_by_path(hv, path) is None]
        op.success()
    return removed


def _plan_owned(hv: Hypervisor, op: Operation, spec: VMSpec, report: Reporter) -> dict[str, str]:
    """Journal the deletion of the volumes kvmhub made for ``spec`` that no other VM uses, the frozen bases under
    them, and the keys of the encrypted ones; say what is kept and why. Returns the candidate bases (path: ref)."""
    users = _volume_users(hv, spec.name, spec.meta.owned_volumes) if spec.meta.owned_volumes else {}
    gone: set[str] = set()
    backings: list[str] = []
    for ref in spec.meta.owned_volumes:
        if users.get(ref):
            report.phase(f"kept {ref}: VM {', '.join(users[ref])} still uses it")
            continue
        pool_name, _, vol = ref.partition("/")
        try:
            pool = hv_storage.lookup_pool(hv, pool_name)
            if pool.has_volume(vol):
                backings.append(bases.backing_path(hv, ref) or "")
                op.forward(ref, undo_actions.delete_volume(pool_name, vol, pool.volume(vol).path))
            gone.add(ref)
        except KvmhubError as exc:
            report.warn(f"could not delete {ref}: {exc.message}")
    frozen: dict[str, str] = {}
    for path in filter(None, backings):
        if bases.is_base(path) and (base := hv_storage.volume_by_path(hv, path)) is not None:
            frozen[path] = f"{base.pool}/{base.name}"
    if frozen:
        op.forward(f"{BASES} ({', '.join(frozen.values())})", bases.release_bases_action(list(frozen)))
    keyed = {d.encryption_secret: f"{d.source.pool}/{d.source.volume}" for d in spec.disks if d.encryption_secret}
    for secret in spec.meta.owned_secrets:
        if keyed.get(secret) not in gone:  # the key opens a volume that is still there
            report.phase(f"kept the key of {keyed.get(secret, 'a kept disk')} in libvirt secret {secret}")
            continue
        op.forward(f"secret {secret}", undo_actions.delete_secret(secret))
    return frozen


def _own_logs(hv: Hypervisor, spec: VMSpec, managed: bool) -> list[str]:
    """The serial log kvmhub set up for a VM it made, and libvirt's QEMU log of it; a path another tool chose
    for a log is never deleted, nor the logs of VMs kvmhub did not make."""
    if not hv.is_local or not managed:
        return []
    serial = f"{SERIAL_LOG_DIR}/{spec.name}-serial.log"
    logs = [serial] if spec.serial is not None and spec.serial.log_file == serial else []
    return [*logs, f"{SERIAL_LOG_DIR}/{spec.name}.log"]


def _volume_users(hv: Hypervisor, removed: str, refs: list[str]) -> dict[str, list[str]]:
    """The other VMs whose disks (or their backing chains) or direct-boot kernel and initrd use each ``pool/vol``."""
    usage = storage_usage.scan(hv)
    boot_files: dict[str, set[str]] = {}
    for dom in hv_domains.list_all(hv):
        if dom.name == removed:
            continue
        try:
            xmls = [dom.xml(inactive=True), *([dom.xml()] if dom.is_active() else [])]
        except KvmhubError:
            continue  # gone while we looked
        roots = [parse(xml, "domain") for xml in xmls]
        boot_files[dom.name] = {p for r in roots for tag in ("os/kernel", "os/initrd") if (p := r.findtext(tag))}
    out: dict[str, list[str]] = {}
    for ref in refs:
        pool_name, _, vol = ref.partition("/")
        try:
            path: str | None = hv_storage.lookup_pool(hv, pool_name).volume(vol).path
        except KvmhubError:
            path = None
        vms_using = set(usage.vms_using(pool_name, vol, path)) - {removed}
        if path is not None:
            vms_using |= {vm for vm, files in boot_files.items() if path in files}
        out[ref] = sorted(vms_using)
    return out
