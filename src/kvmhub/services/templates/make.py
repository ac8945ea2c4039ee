"""Making a warm template from a running VM: prepare the guest, unplug its NICs, save its memory, freeze its disk.

The source VM must be running with its guest agent, one writable qcow2 disk in a file pool and no TPM. Its NICs
are unplugged from the running VM only (each new VM gets its own NIC after the restore), its memory is saved into
the template's state file (the VM stops), and its disk file becomes the template's read-only base
``template-NAME.qcow2``; the source keeps its definition on a new, empty overlay of the same name, so its next
start boots it afresh from the state its disk had at the save. Every step has its undo: a failure gives the source
back running, NICs plugged in, DHCP asked again.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError, OperationFailed
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import saves as hv_saves
from kvmhub.hv import storage as hv_storage
from kvmhub.hv.agent import Agent
from kvmhub.models import DiskSpec, VMSpec
from kvmhub.models.template import TemplateCreateRequest, TemplateInfo, TemplateRecord
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.templates import identity, store
from kvmhub.services.vm import clone as _clone  # noqa: F401  (registers volume.unfreeze, the freeze's undo)
from kvmhub.services.vm.guest_exec import run_shell
from kvmhub.services.vm.lifecycle import get as get_vm
from kvmhub.tools import savefile
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.interface import interface_to_xml
from kvmhub.xml.pool import pool_type_from_xml

UNPLUG_TIMEOUT = 30.0
RENEW_DHCP = r"""
i=0
while [ "$(ls /sys/class/net | grep -vcx lo)" -lt "$1" ] && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
for d in /sys/class/net/*; do
	n=${d##*/}
	[ "$n" = lo ] && continue
	ip link set "$n" up
	[ -x /etc/kvmhub/udhcpc ] && udhcpc -i "$n" -s /etc/kvmhub/udhcpc -p "/run/udhcpc.$n.pid" -t 4 -T 2 -A 10 -b \
		</dev/null >/dev/null 2>&1
done
exit 0
"""


def _writable_disk(name: str, spec: VMSpec) -> DiskSpec:
    writable = [d for d in spec.disks if not d.readonly and d.device == "disk"]
    if len(writable) != 1:
        raise InvalidInput(f"VM {name} has {len(writable)} writable disks; a template is made from a VM with one")
    disk = writable[0]
    if disk.source is None or not disk.source.pool or not disk.source.volume or disk.format != "qcow2":
        raise InvalidInput(f"disk {disk.target} of VM {name} is not a qcow2 volume of a storage pool",
                           cause="its file becomes the template's base, which new VMs' overlays sit on")
    return disk


def _check_source(hv: Hypervisor, dom: hv_domains.Domain, spec: VMSpec) -> tuple[DiskSpec, hv_storage.Pool]:
    state = dom.state()
    if state != "running":
        raise Conflict(f"cannot make a template of VM {dom.name}: it is {state}",
                       cause="a template holds a running guest's memory",
                       hint=f"start it and wait until it is ready: {{cmd:start {dom.name} --wait}}",
                       code="vm.wrong_state")
    if not spec.guest_agent:
        raise InvalidInput(f"VM {dom.name} has no guest agent channel",
                           cause="each VM made from a template gets its identity through the guest agent")
    if spec.tpm is not None:
        raise InvalidInput(f"VM {dom.name} has a TPM", cause="a TPM's state belongs to one VM; templates leave it out")
    disk = _writable_disk(dom.name, spec)
    assert disk.source is not None and disk.source.pool is not None
    pool = hv_storage.lookup_pool(hv, disk.source.pool)
    if pool_type_from_xml(pool.xml()) not in ("dir", "fs", "netfs"):
        raise InvalidInput(f"disk {disk.target} of VM {dom.name} is in pool {pool.name}, not a file pool",
                           cause="freezing it into a base renames its file")
    return disk, pool


def create(hv: Hypervisor, req: TemplateCreateRequest, *, report: Reporter = QUIET) -> TemplateInfo:
    """Make template ``req.name`` from running VM ``req.source``; see the module's docstring for what happens.

    Raises InvalidInput / Conflict / NotFound before touching anything when the request is wrong.
    """
    check_name(req.name, "template")
    check_name(req.source)
    store.require_local(hv)
    disks_pool = pools.disks_pool(hv)
    store.check_free(hv, req.name, disks_pool)
    dom = get_vm(hv, req.source)
    _check_source(hv, dom, domain_from_xml(dom.xml(inactive=True)))
    locks = [LockSpec("template", req.name), LockSpec("vm", req.source)]
    with Operation(hv, "template.create", req.name, locks=locks, report=report) as op:
        store.check_free(hv, req.name, disks_pool)  # again under the lock
        dom = get_vm(hv, req.source)
        spec = domain_from_xml(dom.xml(inactive=True))
        disk, pool = _check_source(hv, dom, spec)
        assert disk.source is not None and disk.source.volume is not None
        live_nics = domain_from_xml(dom.xml()).nics

        op.phase("prepare the guest")
        op.add("ask for DHCP again in the guest", Action("template.renew_dhcp", {"uuid": dom.uuid}))
        identity.prepare(Agent(dom))
        for nic in live_nics:
            op.phase(f"unplug NIC {nic.mac}")
            op.add(f"plug NIC {nic.mac} back in", Action("template.replug", {
                "uuid": dom.uuid, "mac": nic.mac, "xml": interface_to_xml(nic)}))
            dom.detach_device(interface_to_xml(nic), live_only=True)
        _wait_unplugged(dom, [n.mac for n in live_nics if n.mac])

        op.phase("save the memory")
        path = store.state_path(req.name)
        os.makedirs(os.path.dirname(store.seen(path)), mode=0o700, exist_ok=True)
        op.add(f"resume {req.source} from {path}", Action("template.unsave", {"uuid": dom.uuid, "path": path}))
        hv_saves.save_to_file(dom, path)
        faults.point("template-save")

        op.phase("freeze the disk")
        vol = pool.volume(disk.source.volume)
        facts = xml_volume.volume_from_xml(vol.xml())
        base_path = os.path.join(os.path.dirname(vol.path), store.base_volume(req.name))
        op.add(f"give {req.source} its disk file back",
               Action("volume.unfreeze", {"pool": pool.name, "name": vol.name, "path": vol.path, "base": base_path}))
        os.rename(store.seen(vol.path), store.seen(base_path))
        pool.refresh()
        pool.create_volume(xml_volume.volume_xml(vol.name, facts.capacity_bytes, "qcow2", base_path, "qcow2"),
                           what=f"putting an overlay for {req.source} on the template's base")
        faults.point("template-freeze")

        header = savefile.read_header(store.seen(path))
        seed = next((d for d in spec.disks if d.readonly and d.source is not None and d.source.pool
                     and d.source.volume == f"{req.source}-seed.iso"), None)
        record = TemplateRecord(
            name=req.name, source=req.source, source_uuid=dom.uuid,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            image=spec.meta.image, project=spec.meta.project, vcpus=spec.vcpus, memory_mib=spec.memory_mib,
            xml=header.xml, disk=f"{pool.name}/{vol.name}",
            seed=f"{seed.source.pool}/{seed.source.volume}" if seed is not None and seed.source is not None else None,
            base_pool=pool.name, base_volume=store.base_volume(req.name), base_path=base_path, state_path=path,
        )
        op.add(f"forget template {req.name}", Action("template.forget", {"name": req.name}))
        store.write(record)
        op.success()
    report.note(f"VM {req.source} is shut off on an overlay of the template's base; its next start boots it")
    return store.info(hv, record)


def _wait_unplugged(dom: hv_domains.Domain, macs: list[str]) -> None:
    """Wait until the guest released the unplugged NICs (PCI hot-unplug needs its consent)."""
    deadline = time.monotonic() + UNPLUG_TIMEOUT
    while True:
        left = {n.mac or "" for n in domain_from_xml(dom.xml()).nics} & set(macs)
        if not left:
            return
        if time.monotonic() > deadline:
            raise OperationFailed(f"VM {dom.name} did not release NIC {', '.join(sorted(left))} "
                                  f"within {UNPLUG_TIMEOUT:g} s", cause="the guest ignored the PCI unplug request")
        time.sleep(0.1)


def remove(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> list[str]:
    """Remove template ``name``: its record, state file and base. Refused (Conflict, naming them) while VMs sit on
    the base. Returns what was removed."""
    record = store.get(hv, name)
    with Operation(hv, "template.rm", name, locks=[LockSpec("template", name)], report=report) as op:
        using = store.users(hv, record)
        if using:
            raise Conflict(f"template {name} is in use by VM{'s' if len(using) > 1 else ''} {', '.join(using)}",
                           cause=f"{'their disks sit' if len(using) > 1 else 'its disk sits'} on the template's base",
                           hint="remove them first ({cmd:rm NAME}), then the template", code="template.in_use")
        removed = []
        op.add(f"forget template {name}")  # removing is not undone; the steps show in `ops show`
        os.unlink(store.seen(store.record_path(name)))
        removed.append(store.record_path(name))
        op.add(f"remove {record.state_path}")
        try:
            os.unlink(store.seen(record.state_path))
            removed.append(record.state_path)
        except FileNotFoundError:
            pass
        op.add(f"delete volume {record.base_pool}/{record.base_volume}")
        try:
            pool = hv_storage.lookup_pool(hv, record.base_pool)
            pool.refresh()
            if pool.has_volume(record.base_volume):
                pool.volume(record.base_volume).delete()
                removed.append(f"{record.base_pool}/{record.base_volume}")
        except KvmhubError as exc:
            report.warn(f"could not delete the base {record.base_pool}/{record.base_volume}: {exc.message}")
        op.success()
    return removed


@register("template.renew_dhcp")
def _renew_dhcp(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of the guest's preparation: it asks for its addresses again (its seed stays unmounted, harmless)."""
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is not None and dom.is_active():
        nics = len(domain_from_xml(dom.xml()).nics)  # the guest sees NICs plugged back a moment later
        run_shell(Agent(dom), RENEW_DHCP, str(nics), timeout=30.0)


@register("template.replug")
def _replug(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of a NIC unplug: the running VM gets the same NIC (same MAC) back."""
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None or not dom.is_active():
        return
    if p["mac"] in {n.mac for n in domain_from_xml(dom.xml()).nics}:
        return
    dom.attach_device(p["xml"], live_only=True)


@register("template.unsave")
def _unsave(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of the save: a source VM that stopped with it resumes from the state file, which then goes."""
    path = ctx.path(p["path"])
    if not os.path.exists(path):
        return
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is not None and not dom.is_active():
        with_source = savefile.read_header(path).xml
        if p["uuid"] in with_source:  # the file still holds this VM's state
            hv_saves.restore_from_file(ctx.hv, p["path"], running=True)
    os.unlink(path)


@register("template.forget")
def _forget(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of writing a template's record."""
    try:
        os.unlink(ctx.path(store.record_path(p["name"])))
    except FileNotFoundError:
        pass
