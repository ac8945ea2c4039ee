"""Creating a VM from an image: validate everything, then linked-clone disk, seed ISO, define, start,
each step with its undo."""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid as uuidlib

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import storage as hv_storage
from kvmhub.hv import tuning as hv_tuning
from kvmhub.hv.connection import host_root
from kvmhub.models import DEFAULT_PROJECT, DiskSource, DiskSpec, KvmhubMeta, NICSpec, SerialSpec, VMSpec
from kvmhub.models.image import ImageMeta
from kvmhub.models.project import ProjectUse
from kvmhub.models.requests_vm import CreateRequest
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects, undo_actions
from kvmhub.services.host import accel
from kvmhub.services.network import leases
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.storage import disks as disks_svc
from kvmhub.services.storage import encryption, images
from kvmhub.services.vm import cloudinit, installer, osinfo, shares, ssh
from kvmhub.services.vm import firmware as vm_firmware
from kvmhub.services.vm import tpm as vm_tpm
from kvmhub.services.vm.readiness import SERIAL_LOG_DIR as SERIAL_LOG_DIR
from kvmhub.services.vm.tuning import apply_to_spec
from kvmhub.tools.seed import build_nocloud_seed
from kvmhub.validate import MAX_VCPUS, check_name, parse_size
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_to_xml
from kvmhub.xml.filesystem import with_share
from kvmhub.xml.network import network_subnet_from_xml


def disk_volume(name: str) -> str:
    return f"{name}-disk0.qcow2"


def seed_volume(name: str) -> str:
    return f"{name}-seed.iso"


def _check_headroom(req: CreateRequest, memory_mib: int) -> int | None:
    """Check --max-cpus / --max-memory against --cpus / --memory; returns the memory maximum in MiB."""
    if req.max_cpus is not None and not req.cpus <= req.max_cpus <= MAX_VCPUS:
        raise InvalidInput(f"{{opt:max_cpus}} {req.max_cpus} is out of range",
                           cause=f"valid: {req.cpus} to {MAX_VCPUS}")
    if req.max_memory is None:
        return None
    max_mib = parse_size(req.max_memory, what="maximum memory", default_unit="M") // 1024**2
    if max_mib < memory_mib:
        raise InvalidInput(f"{{opt:max_memory}} {req.max_memory} is out of range",
                           cause=f"valid: at least {{opt:memory}} ({memory_mib} MiB)")
    return max_mib


def _validate(hv: Hypervisor, req: CreateRequest, vm_uuid: str
              ) -> tuple[int, int | None, cloudinit.SeedDocuments, ImageMeta | None, str]:
    """Check everything before touching the host; returns (memory MiB, disk bytes, seed, image record, image
    path)."""
    check_name(req.name, "VM")
    vm_firmware.check_request(req)
    if not 1 <= req.cpus <= MAX_VCPUS:
        raise InvalidInput(f"{{opt:cpus}} {req.cpus} is out of range", hint=f"1 to {MAX_VCPUS}")
    memory_mib = parse_size(req.memory, what="memory", default_unit="M") // 1024**2
    if memory_mib < 32:
        raise InvalidInput(f"{{opt:memory}} {req.memory} is too small", hint="at least 32M")
    _check_headroom(req, memory_mib)
    disk = parse_size(req.disk, what="disk size", default_unit="G") if req.disk else None
    seed = cloudinit.seed_documents(cloudinit.CloudInitRequest(
        hostname=req.name, instance_id=vm_uuid, user_data=req.user_data, ssh_keys=req.ssh_keys,
        password=req.password, packages=req.packages, runcmd=req.runcmd, network_config=req.network_config,
        vendor_data=req.vendor_data, access_key=req.access_key))
    if req.image is None and req.vol is None and req.disk_url is None and not installer.wanted(req):
        raise InvalidInput("{opt:image} is missing", hint="pick one from {cmd:image ls}, or give {opt:vol}, "
                           "{opt:disk_url}, {opt:iso}, {opt:location} or {opt:kernel}")
    image_vol, image_meta = images.lookup(hv, req.image) if req.image is not None else (None, None)
    if req.network is not None:
        net = hv_networks.lookup_network(hv, req.network)
        cloudinit.address_to_reserve(net, req.ip, seed)
    elif req.ip is not None:
        raise InvalidInput("{opt:ip} needs {opt:network}", hint="the address is reserved on that network")
    _check_free(hv, req, pools.disks_pool(hv))
    return memory_mib, disk, seed, image_meta, image_vol.path if image_vol is not None else ""


def _check_free(hv: Hypervisor, req: CreateRequest, disks: hv_storage.Pool) -> None:
    """Refuse a name a VM or a leftover volume already has."""
    if hv_domains.exists(hv, req.name):
        raise Conflict(f"a VM named {req.name!r} already exists", hint="pick another name, or {cmd:rm} it",
                       code="name.taken")
    present = set(disks.volume_names())
    for vol in (disk_volume(req.name), seed_volume(req.name), *installer.volume_names(req)):
        if vol in present:
            raise Conflict(
                f"volume {vol} already exists in pool {disks.name}",
                cause="left over from an earlier VM of the same name, or made by hand",
                hint=f"remove it: `virsh vol-delete {vol} --pool {disks.name}`", code="name.taken",
            )


def requested_use(req: CreateRequest) -> ProjectUse:
    """What ``req`` adds to its project's use as far as the request alone tells (a disk cloned from an image is
    at least the image's size: the create counts it, under the project's lock)."""
    memory = parse_size(req.max_memory or req.memory, what="memory", default_unit="M")
    disk = parse_size(req.disk, what="disk size", default_unit="G") if req.disk else 0
    return ProjectUse(vms=1, cpus=req.max_cpus or req.cpus, memory=memory, disk=disk)


def build_spec(
    req: CreateRequest,
    memory_mib: int,
    domain_type: str,
    vm_uuid: str,
    mac: str | None = None,
    host_cpus: int = 1,
) -> VMSpec:
    """The VMSpec for ``req``, limits included. Raises InvalidInput for out-of-range limits."""
    spec = vm_firmware.apply(_base_spec(req, memory_mib, domain_type, vm_uuid, mac), req)
    return apply_to_spec(spec, req.limits, host_cpus)


def wants_seed(req: CreateRequest) -> bool:
    """A NoCloud seed for every VM but installer and kernel-boot ones given no cloud-init option."""
    cloud_init = (req.user_data, req.ssh_keys, req.password, req.packages, req.runcmd, req.network_config,
                  req.vendor_data)
    return req.image is not None or not installer.wanted(req) or any(cloud_init)


def _base_spec(req: CreateRequest, memory_mib: int, domain_type: str, vm_uuid: str, mac: str | None) -> VMSpec:
    disks_pool = pools.DISKS_POOL
    disks = [DiskSpec(target="vda", source=DiskSource(pool=disks_pool, volume=disk_volume(req.name)))]
    owned = [f"{disks_pool}/{disk_volume(req.name)}"]
    if wants_seed(req):
        disks.append(DiskSpec(target="vdb", format="raw", readonly=True,
                              source=DiskSource(pool=disks_pool, volume=seed_volume(req.name))))
        owned.append(f"{disks_pool}/{seed_volume(req.name)}")
    return VMSpec(
        name=req.name,
        uuid=vm_uuid,
        domain_type=domain_type,  # type: ignore[arg-type]
        vcpus=req.cpus,
        max_vcpus=req.max_cpus,
        memory_mib=memory_mib,
        max_memory_mib=_check_headroom(req, memory_mib),
        disks=disks,
        nics=[NICSpec(network=req.network, mac=mac)] if req.network else [],
        serial=SerialSpec(log_file=f"{SERIAL_LOG_DIR}/{req.name}-serial.log"),
        tpm=vm_tpm.DEFAULT_TPM if req.tpm else None,
        meta=KvmhubMeta(
            image=req.image,
            project=req.project or DEFAULT_PROJECT,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            owned_volumes=owned,
        ),
    )


def create(hv: Hypervisor, req: CreateRequest, *, report: Reporter = QUIET) -> hv_domains.Domain:
    """Make a VM from an image (linked-clone disk), or an installer or kernel (empty disk): seed ISO,
    installer volumes (their upload reported as bytes), definition, start; ``report.cancel`` stops it.

    Each step registers its undo before it runs; any failure or Ctrl-C removes what was made.
    Raises InvalidInput / NotFound / Conflict before touching anything when the request is wrong.
    """
    vm_uuid = str(uuidlib.uuid4())
    planned = shares.plan(req.shares)
    if planned and wants_seed(req):  # the seed mounts them at first boot
        req = req.model_copy(update={"runcmd": [*req.runcmd, *shares.mount_commands(planned)]})
    memory_mib, disk_bytes, seed_docs, image_meta, image_path = _validate(hv, req, vm_uuid)
    plan = installer.check(hv, req)
    if plan.detected_os is not None:
        req = req.model_copy(update={"os": plan.detected_os})
    for note in plan.notes:
        report.phase(note)
    image_os = image_meta.os if image_meta is not None and req.os is None else None
    profile = osinfo.for_create(req.os, req.image, image_os, memory_mib, disk_bytes, report)
    plan.profile = profile
    boot = disks_svc.boot_disk_of(hv, req) if req.vol is not None or req.disk_url is not None else None
    if req.image is None and boot is None:
        disk_bytes = installer.disk_size(profile, disk_bytes)
    host_cpus = hv_tuning.host_cpus(hv)
    # The limits are checked before the slow accelerator probe; the MAC is a placeholder for --net-bw.
    build_spec(req, memory_mib, "qemu", vm_uuid, "52:54:00:00:00:00", host_cpus)
    probe = accel.accelerator()
    if probe.accelerator == "tcg":
        report.warn(f"{accel.TCG_WARNING} ({probe.detail})")
    if req.tpm:
        vm_tpm.check_host(hv, accel.domain_type(probe.accelerator))
    vm_firmware.check_host(hv, accel.domain_type(probe.accelerator), req)
    mac = leases.new_mac(hv, req.network) if req.network else None
    spec = build_spec(req, memory_mib, accel.domain_type(probe.accelerator), vm_uuid, mac, host_cpus)
    if wants_seed(req) and image_meta is not None:
        spec.meta.user = ssh.default_user(req.os or image_meta.os, image_meta.source)
    if req.encrypt and boot is not None:
        raise InvalidInput("{opt:encrypt} makes a new encrypted disk; it cannot encrypt {opt:vol} or {opt:disk_url}",
                           hint="drop {opt:encrypt}, or let kvmhub make the disk ({opt:image}, {opt:disk})")
    if boot is not None:
        spec = disks_svc.with_boot_disk(spec, boot, pools.DISKS_POOL, disk_volume(req.name))
    if profile is not None:
        spec = vm_firmware.apply(osinfo.apply_profile(spec, profile), req)  # the profile's machine may be pc
    disks = pools.disks_pool(hv)
    project = projects.resolve(req.project)
    locks = [LockSpec("vm", req.name), projects.lock(project)]
    if req.image is not None:
        locks.append(LockSpec("image", req.image, shared=True))  # `image rm` waits until the clone exists
    with Operation(hv, "vm.create", req.name, locks=locks, report=report) as op:
        _check_free(hv, req, disks)  # again under the lock: a create of the same name may have won meanwhile
        image_capacity = images.get(hv, req.image).info().capacity if req.image and boot is None else 0
        capacity = max(image_capacity, disk_bytes or 0)
        projects.check(hv, project, ProjectUse(vms=1, cpus=spec.max_vcpus or spec.vcpus,
                                               memory=(spec.max_memory_mib or spec.memory_mib) * 1024**2,
                                               disk=capacity if boot is None else projects.disk_bytes(hv, spec)))
        if boot is None:
            op.phase("clone disk" if req.image else "create disk")
            backing = (image_path, "qcow2") if req.image else (None, None)
            secret = None
            if req.encrypt:
                spec, secret = encryption.encrypt_new_disk(hv, spec, disk_volume(req.name), op)
            op.add(f"delete volume {disk_volume(req.name)}", undo_actions.delete_volume(disks.name,
                                                                                      disk_volume(req.name)))
            vol_xml = xml_volume.volume_xml(disk_volume(req.name), capacity, "qcow2", *backing,
                                            encryption_secret=secret)
            what = f"cloning image {req.image}" if req.image else "creating the disk"
            vol = encryption.create_volume(disks, vol_xml, what=what) if secret else \
                disks.create_volume(vol_xml, what=what)
            op.made(key=vol.path)
            faults.point("clone-disk")

        if wants_seed(req):
            op.phase("build seed")
            iso = build_nocloud_seed(seed_docs.meta_data, seed_docs.user_data, seed_docs.network_config,
                                     seed_docs.vendor_data)
            op.add(f"delete volume {seed_volume(req.name)}", undo_actions.delete_volume(disks.name,
                                                                                      seed_volume(req.name)))
            seed = disks.create_volume(
                xml_volume.volume_xml(seed_volume(req.name), len(iso), "raw", None, None), what="creating the seed"
            )
            op.made(key=seed.path)
            seed.upload(io.BytesIO(iso), len(iso))
            faults.point("build-seed")

        uploaded = installer.make_volumes(disks, req.name, plan, op, report, op.progress)
        spec = installer.apply(spec, plan, disks.name, uploaded)

        if req.network is not None and mac is not None and _has_subnet(hv, req.network):
            network = req.network
            op.phase("reserve address")
            op.add(f"release the address on {network}", undo_actions.release_lease(network, mac))
            net = hv_networks.lookup_network(hv, network)
            ip = cloudinit.address_to_reserve(net, req.ip, seed_docs)
            if ip is not None:
                leases.register(hv, network, req.name, mac, ip)
            else:
                leases.register_free(hv, network, req.name, mac)
            faults.point("reserve-address")

        op.phase("define")
        op.add(f"undefine VM {req.name}", undo_actions.undefine_domain(vm_uuid, req.name))
        xml = domain_to_xml(spec)
        for share in planned:
            xml = with_share(xml, share)
        dom = hv_domains.define(hv, installer.domain_xml(xml, plan))
        faults.point("define")
        if spec.meta.user and (req.ssh_keys or req.access_key):
            report.note(f"SSH keys for user {spec.meta.user}")

        if req.start:
            op.phase("start")
            for log in _new_logs(hv, spec):  # virtlogd makes them at start; an undone create leaves none
                op.add(f"remove {log}", undo_actions.remove_file(log))
            op.add(f"kill VM {req.name}", undo_actions.destroy_domain(vm_uuid, req.name))
            dom.start()
            if plan.one_shot:
                installer.after_start(hv, dom)
            faults.point("start")
        op.success()
    return dom


def _new_logs(hv: Hypervisor, spec: VMSpec) -> list[str]:
    """The serial log and libvirt's QEMU log the first start will make, where none exists yet (local hosts)."""
    if not hv.is_local:
        return []
    logs = [spec.serial.log_file] if spec.serial and spec.serial.log_file else []
    logs.append(f"{SERIAL_LOG_DIR}/{spec.name}.log")
    return [p for p in logs if not os.path.lexists(f"{host_root()}{p}")]


def _has_subnet(hv: Hypervisor, network: str) -> bool:
    """True for networks kvmhub hands addresses out on (not bridge/direct ones)."""
    return network_subnet_from_xml(hv_networks.lookup_network(hv, network).xml()) is not None
