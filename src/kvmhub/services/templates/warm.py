"""Making a VM from a warm template: restored from the template's saved memory instead of booted.

libvirt restores a save image only under the name and UUID it was saved with (and refuses other NIC MACs), but a
changed disk path passes. So for each new VM kvmhub rewrites the definition in the header of the template's state
file (:mod:`kvmhub.tools.savefile`) with the new VM's name, UUID, disks, serial log and metadata, under the
template's lock, defines the VM with that same definition and restores it. The template was saved without a NIC:
the new VM's NIC, with its own MAC and address reservation, is plugged in after the restore, and the guest gets
its identity through its agent (:mod:`kvmhub.services.templates.identity`) before the create returns.

Each step registers its undo first, as `create` does: overlay, seed, reservation, definition, the running VM.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import saves as hv_saves
from kvmhub.hv import storage as hv_storage
from kvmhub.hv.agent import Agent
from kvmhub.models import NICSpec
from kvmhub.models.project import ProjectUse
from kvmhub.models.requests_vm import CloudInitRequest, CreateRequest
from kvmhub.models.template import TemplateRecord
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.network import leases
from kvmhub.services.templates import identity, store
from kvmhub.services.vm import cloudinit
from kvmhub.services.vm.serial_marks import SERIAL_LOG_DIR
from kvmhub.tools import savefile
from kvmhub.tools.seed import build_nocloud_seed
from kvmhub.validate import check_name
from kvmhub.xml import volume as xml_volume
from kvmhub.xml._util import parse
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.interface import interface_to_xml
from kvmhub.xml.network import network_subnet_from_xml
from kvmhub.xml.rewrite import NewSource, Rewrite, rewrite_domain

MIB = 1024**2


def disk_volume(name: str) -> str:
    """The VM's disk volume, named as `create` names it (services.vm.create, not imported: it is slow to load)."""
    return f"{name}-disk0.qcow2"


def seed_volume(name: str) -> str:
    """The VM's seed volume, named as `create` names it."""
    return f"{name}-seed.iso"
# what a template fixes: a request naming any of these is refused rather than silently ignored
_FROM_TEMPLATE = ("image", "vol", "disk_url", "disk", "iso", "location", "kernel", "initrd", "kickstart", "preseed",
                  "max_cpus", "max_memory", "os", "network_config", "vendor_data", "user_data")


def _refuse_the_rest(req: CreateRequest) -> None:
    given = [f for f in _FROM_TEMPLATE if getattr(req, f)]
    given += [f for f in ("encrypt", "tpm") if getattr(req, f)]
    given += ["shares"] if req.shares else []
    given += ["packages"] if req.packages else []
    given += ["runcmd"] if req.runcmd else []
    if given:
        raise InvalidInput(f"{{opt:template}} cannot be combined with {{opt:{given[0]}}}",
                           cause="a VM made from a template is the template's running guest: its disk, memory, "
                                 "devices and first boot are the template's")
    if not req.start:
        raise InvalidInput("{opt:template} cannot be combined with {opt:no_start}",
                           cause="a VM made from a template is restored running")


def check_request(hv: Hypervisor, req: CreateRequest) -> TemplateRecord:
    """Refuse a request a template cannot make (InvalidInput), or for a template that does not exist (NotFound);
    returns the template's record. Touches nothing."""
    assert req.template is not None
    check_name(req.name)
    _refuse_the_rest(req)
    return store.get(hv, req.template)


def _host_address(hv: Hypervisor, network: str) -> str | None:
    """The host's IPv4 address on ``network`` (the guest pings it from its new address), if it has one."""
    root = parse(hv_networks.lookup_network(hv, network).xml(), "network")
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") == "ipv4" and ip.get("address"):
            return ip.get("address")
    return None


def _check_free(hv: Hypervisor, name: str, pools: list[hv_storage.Pool]) -> None:
    if hv_domains.exists(hv, name):
        raise Conflict(f"a VM named {name!r} already exists", hint="pick another name, or {cmd:rm} it",
                       code="name.taken")
    for pool in pools:
        for vol in (disk_volume(name), seed_volume(name)):
            if pool.has_volume(vol):
                raise Conflict(f"volume {vol} already exists in pool {pool.name}",
                               cause="left over from an earlier VM of the same name, or made by hand",
                               hint=f"remove it: `virsh vol-delete {vol} --pool {pool.name}`", code="name.taken")


def _definition(record: TemplateRecord, name: str, vm_uuid: str, project: str, seed_pool: str | None) -> str:
    """The template's saved definition with VM ``name``'s identity, disks, serial log and metadata."""
    disk_pool = record.disk.split("/", 1)[0]
    disks = {record.disk: NewSource(pool=disk_pool, volume=disk_volume(name), format="qcow2")}
    owned = [f"{disk_pool}/{disk_volume(name)}"]
    if record.seed is not None and seed_pool is not None:
        disks[record.seed] = NewSource(pool=seed_pool, volume=seed_volume(name), format="raw")
        owned.append(f"{seed_pool}/{seed_volume(name)}")
    meta = domain_from_xml(record.xml).meta.model_copy(update={
        "project": project, "owned_volumes": owned,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    })
    return rewrite_domain(record.xml, Rewrite(name=name, uuid=vm_uuid, disks=disks,
                                              serial_log=f"{SERIAL_LOG_DIR}/{name}-serial.log", meta=meta))


def create(hv: Hypervisor, req: CreateRequest, *, report: Reporter = QUIET) -> hv_domains.Domain:
    """Make VM ``req.name`` from template ``req.template``: overlay on its base, own seed, reservation on
    ``req.network``, definition, restore, NIC, identity. Returns the running VM, its guest answering on its
    address. Raises InvalidInput / NotFound / Conflict before touching anything when the request is wrong."""
    assert req.template is not None
    record = check_request(hv, req)
    vm_uuid = str(uuidlib.uuid4())
    seed_docs = cloudinit.seed_documents(CloudInitRequest(
        hostname=req.name, instance_id=vm_uuid, ssh_keys=req.ssh_keys, password=req.password,
        access_key=req.access_key))
    keys = cloudinit.read_ssh_keys(req.ssh_keys) + ([req.access_key] if req.access_key else [])
    if req.network is not None:
        cloudinit.address_to_reserve(hv_networks.lookup_network(hv, req.network), req.ip, seed_docs)
    elif req.ip is not None:
        raise InvalidInput("{opt:ip} needs {opt:network}", hint="the address is reserved on that network")
    base_pool = hv_storage.lookup_pool(hv, record.base_pool)
    seed_pool = hv_storage.lookup_pool(hv, record.seed.split("/", 1)[0]) if record.seed else None
    pools = [base_pool] + ([seed_pool] if seed_pool is not None and seed_pool.name != base_pool.name else [])
    _check_free(hv, req.name, pools)
    project = projects.resolve(req.project)
    if record.project is not None and project != record.project:
        raise InvalidInput(f"template {record.name} belongs to project {record.project}, not {project}",
                           cause="it holds the memory of a VM of that project; VMs made from it stay there",
                           hint=f"{{opt:project}} {record.project}")
    locks = [LockSpec("vm", req.name), LockSpec("template", req.template), projects.lock(project)]
    with Operation(hv, "vm.create", req.name, locks=locks, report=report) as op:
        _check_free(hv, req.name, pools)  # again under the lock
        record = store.get(hv, req.template)
        if not os.path.exists(store.seen(record.state_path)):
            raise Conflict(f"template {req.template} has lost its state file {record.state_path}",
                           hint=f"{{cmd:template rm {req.template}}} and make it again")
        base_pool.refresh()
        capacity = base_pool.volume(record.base_volume).info().capacity
        projects.check(hv, project, ProjectUse(vms=1, cpus=record.vcpus, memory=record.memory_mib * MIB,
                                               disk=capacity))
        op.phase("overlay on the template's base")
        op.add(f"delete volume {disk_volume(req.name)}", undo_actions.delete_volume(base_pool.name,
                                                                                  disk_volume(req.name)))
        vol = base_pool.create_volume(xml_volume.volume_xml(disk_volume(req.name), capacity, "qcow2",
                                                            record.base_path, "qcow2"),
                                      what=f"putting an overlay on template {req.template}'s base")
        op.made(key=vol.path)
        if seed_pool is not None:
            op.phase("build seed")
            iso = build_nocloud_seed(seed_docs.meta_data, seed_docs.user_data, seed_docs.network_config,
                                     seed_docs.vendor_data)
            op.add(f"delete volume {seed_volume(req.name)}", undo_actions.delete_volume(seed_pool.name,
                                                                                      seed_volume(req.name)))
            seed = seed_pool.create_volume(xml_volume.volume_xml(seed_volume(req.name), len(iso), "raw", None, None),
                                           what="creating the seed")
            op.made(key=seed.path)
            seed.upload(io.BytesIO(iso), len(iso))

        mac = leases.new_mac(hv, req.network) if req.network else None
        # the reservation (~0.3 s: libvirt reloads the network's firewall rules) runs beside the define and restore,
        # on its own connection: the guest asks for its address only once its NIC is plugged, after both
        with hv.twin() as other, ThreadPoolExecutor(1, thread_name_prefix="kvmhub-reserve") as beside:
            reserving = None
            if req.network is not None and mac is not None and _has_subnet(hv, req.network):
                op.phase("reserve address")
                op.add(f"release the address on {req.network}", undo_actions.release_lease(req.network, mac))
                ip = cloudinit.address_to_reserve(hv_networks.lookup_network(hv, req.network), req.ip, seed_docs)
                reserving = beside.submit(_reserve, other, req.network, req.name, mac, ip)

            op.phase("define")
            xml = _definition(record, req.name, vm_uuid, project, seed_pool.name if seed_pool is not None else None)
            op.add(f"undefine VM {req.name}", undo_actions.undefine_domain(vm_uuid, req.name))
            dom = hv_domains.define(hv, xml)
            faults.point("warm-define")

            op.phase("restore the memory")
            op.add(f"remove {SERIAL_LOG_DIR}/{req.name}-serial.log",
                   undo_actions.remove_file(f"{SERIAL_LOG_DIR}/{req.name}-serial.log"))
            op.add(f"kill VM {req.name}", undo_actions.destroy_domain(vm_uuid, req.name))
            state = store.seen(record.state_path)
            savefile.write_header(state, savefile.read_header(state), xml)
            hv_saves.restore_from_file(hv, record.state_path, running=True)
            faults.point("warm-restore")
        # leaving the executor waited for the reservation, so an undo never races it; its error is raised here
        if reserving is not None:
            reserving.result()

        plug = None
        if req.network is not None and mac is not None:
            nic = interface_to_xml(NICSpec(network=req.network, mac=mac))

            def plug() -> None:
                op.phase("plug NIC")
                dom.attach_device(nic)
                op.phase("address")

        op.phase("identity")
        # the NIC is plugged once the identity script runs, which waits for it: the agent answers the start at once,
        # where it took ~0.25 s under TCG with the guest busy taking a NIC plugged before
        identity.give_identity(Agent(dom), name=req.name, uuid=vm_uuid, mac=mac,
                               host_ip=_host_address(hv, req.network) if req.network else None,
                               user=domain_from_xml(xml).meta.user, keys=keys, started=plug)
        op.phase("ready")
        op.success()
    return dom


def _reserve(hv: Hypervisor, network: str, name: str, mac: str, ip: str | None) -> None:
    """Reserve ``ip`` (the next free address when None) on ``network`` for VM ``name``'s ``mac``."""
    if ip is not None:
        leases.register(hv, network, name, mac, ip)
    else:
        leases.register_free(hv, network, name, mac)


def _has_subnet(hv: Hypervisor, network: str) -> bool:
    """True for networks kvmhub hands addresses out on (not bridge/direct ones)."""
    return network_subnet_from_xml(hv_networks.lookup_network(hv, network).xml()) is not None
