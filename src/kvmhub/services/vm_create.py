"""Creating a VM from an image: validate everything, then linked-clone disk, seed ISO, define, start,
each step with its undo."""

from __future__ import annotations

import datetime as dt
import io
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import storage as hv_storage
from kvmhub.hv import tuning as hv_tuning
from kvmhub.models import DiskSource, DiskSpec, KvmhubMeta, NICSpec, SerialSpec, VMSpec
from kvmhub.services import accel, images, leases, pools
from kvmhub.services.tuning import LimitsRequest, apply_to_spec
from kvmhub.services.vms import Say
from kvmhub.tools.seed import build_nocloud_seed
from kvmhub.undo import Undo
from kvmhub.validate import MAX_VCPUS, check_name, parse_size
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_to_xml

SERIAL_LOG_DIR = "/var/log/libvirt/qemu"


def _quiet(_msg: str) -> None:
    pass


@dataclass
class CreateRequest:
    name: str
    image: str | None = None  # None: an installer or kernel-boot VM with an empty --disk
    cpus: int = 1
    memory: str = "512M"
    disk: str | None = None
    network: str | None = None
    ip: str | None = None  # reserved on `network`; picked from its DHCP range when None
    ssh_keys: list[Path] = field(default_factory=list)
    user_data: Path | None = None
    start: bool = True
    max_cpus: int | None = None
    max_memory: str | None = None
    limits: LimitsRequest = field(default_factory=LimitsRequest)
    os: str | None = None  # libosinfo short id; picks buses, NIC model, machine, minimum sizes
    encrypt: bool = False  # the VM's disk is a LUKS qcow2, its key in a libvirt secret
    # cloud-init beyond user-data and keys
    password: str | None = None  # stored hashed in the seed
    packages: list[str] = field(default_factory=list)
    runcmd: list[str] = field(default_factory=list)
    network_config: Path | None = None
    vendor_data: Path | None = None
    # installer path and direct kernel boot
    iso: Path | None = None  # attached as CD-ROM and booted
    location: Path | None = None  # installer ISO or tree the kernel/initrd come from (unattended)
    kickstart: Path | None = None
    preseed: Path | None = None
    extra_args: str | None = None  # appended to the installer's kernel command line
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    vnc: bool | None = None  # None: a VNC display for installer VMs only
    vnc_port: int | None = None
    vnc_listen: str = "127.0.0.1"


def disk_volume(name: str) -> str:
    return f"{name}-disk0.qcow2"


def seed_volume(name: str) -> str:
    return f"{name}-seed.iso"


def _read_keys(paths: list[Path]) -> list[str]:
    keys = []
    for p in paths:
        try:
            text = p.read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read SSH key {p}: {exc.strerror}") from None
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                if not line.startswith(("ssh-", "ecdsa-", "sk-")):
                    raise InvalidInput(f"{p} does not look like an SSH public key", hint="pass the .pub file")
                keys.append(line.strip())
    return keys


def _user_data(req: CreateRequest, keys: list[str]) -> str:
    """The #cloud-config document: the user's file (checked), with --ssh-key keys and hostname added."""
    doc: dict[str, object] = {}
    if req.user_data is not None:
        try:
            text = req.user_data.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read user-data {req.user_data}: {exc.strerror}") from None
        if not text.startswith("#cloud-config"):
            if keys:
                raise InvalidInput(
                    "--ssh-key needs a #cloud-config user-data to merge into",
                    hint="put the keys in the user-data, or drop --ssh-key",
                )
            return text  # a script or MIME multipart: passed through untouched
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise InvalidInput(
                f"user-data {req.user_data} is not valid YAML{where}",
                cause=str(getattr(exc, "problem", exc)),
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InvalidInput(f"user-data {req.user_data} must be a YAML mapping")
        doc = dict(loaded or {})
    doc.setdefault("hostname", req.name)
    if keys:
        existing = doc.get("ssh_authorized_keys") or []
        if not isinstance(existing, list):
            raise InvalidInput("user-data's ssh_authorized_keys must be a list")
        doc["ssh_authorized_keys"] = [*existing, *keys]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)


def _check_headroom(req: CreateRequest, memory_mib: int) -> int | None:
    """Check --max-cpus / --max-memory against --cpus / --memory; returns the memory maximum in MiB."""
    if req.max_cpus is not None and not req.cpus <= req.max_cpus <= MAX_VCPUS:
        raise InvalidInput(f"--max-cpus {req.max_cpus} is out of range", cause=f"valid: {req.cpus} to {MAX_VCPUS}")
    if req.max_memory is None:
        return None
    max_mib = parse_size(req.max_memory, what="maximum memory", default_unit="M") // 1024**2
    if max_mib < memory_mib:
        raise InvalidInput(f"--max-memory {req.max_memory} is out of range",
                           cause=f"valid: at least --memory ({memory_mib} MiB)")
    return max_mib


def _validate(hv: Hypervisor, req: CreateRequest) -> tuple[int, int | None, str, str]:
    """Check everything before touching the host; returns (memory MiB, disk bytes, user-data, image path)."""
    check_name(req.name, "VM")
    if not 1 <= req.cpus <= MAX_VCPUS:
        raise InvalidInput(f"--cpus {req.cpus} is out of range", hint=f"1 to {MAX_VCPUS}")
    memory_mib = parse_size(req.memory, what="memory", default_unit="M") // 1024**2
    if memory_mib < 32:
        raise InvalidInput(f"--memory {req.memory} is too small", hint="at least 32M")
    _check_headroom(req, memory_mib)
    disk = parse_size(req.disk, what="disk size", default_unit="G") if req.disk else None
    user_data = _user_data(req, _read_keys(req.ssh_keys))
    if req.image is None:
        raise InvalidInput("--image is missing", hint="pick one from `kvmhub image ls`")
    image_vol = images.get(hv, req.image)
    if req.network is not None:
        net = hv_networks.lookup_network(hv, req.network)
        if req.ip is not None:
            leases.check_ip(net, req.ip)
    elif req.ip is not None:
        raise InvalidInput("--ip needs --network", hint="the address is reserved on that network")
    if hv_domains.exists(hv, req.name):
        raise Conflict(f"a VM named {req.name!r} already exists", hint="pick another name, or `kvmhub rm` it")
    disks = pools.disks_pool(hv)
    for vol in (disk_volume(req.name), seed_volume(req.name)):
        if disks.has_volume(vol):
            raise Conflict(
                f"volume {vol} already exists in pool {disks.name}",
                cause="left over from an earlier VM of the same name, or made by hand",
                hint=f"remove it: `virsh vol-delete {vol} --pool {disks.name}`",
            )
    return memory_mib, disk, user_data, image_vol.path


def build_spec(
    req: CreateRequest,
    memory_mib: int,
    domain_type: str,
    vm_uuid: str,
    mac: str | None = None,
    host_cpus: int = 1,
) -> VMSpec:
    """The VMSpec for ``req``, limits included. Raises InvalidInput for out-of-range limits."""
    return apply_to_spec(_base_spec(req, memory_mib, domain_type, vm_uuid, mac), req.limits, host_cpus)


def _base_spec(req: CreateRequest, memory_mib: int, domain_type: str, vm_uuid: str, mac: str | None) -> VMSpec:
    disks_pool = pools.DISKS_POOL
    return VMSpec(
        name=req.name,
        uuid=vm_uuid,
        domain_type=domain_type,  # type: ignore[arg-type]
        vcpus=req.cpus,
        max_vcpus=req.max_cpus,
        memory_mib=memory_mib,
        max_memory_mib=_check_headroom(req, memory_mib),
        disks=[
            DiskSpec(target="vda", source=DiskSource(pool=disks_pool, volume=disk_volume(req.name))),
            DiskSpec(
                target="vdb",
                format="raw",
                readonly=True,
                source=DiskSource(pool=disks_pool, volume=seed_volume(req.name)),
            ),
        ],
        nics=[NICSpec(network=req.network, mac=mac)] if req.network else [],
        serial=SerialSpec(log_file=f"{SERIAL_LOG_DIR}/{req.name}-serial.log"),
        meta=KvmhubMeta(
            image=req.image,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            owned_volumes=[f"{disks_pool}/{disk_volume(req.name)}", f"{disks_pool}/{seed_volume(req.name)}"],
        ),
    )


def create(hv: Hypervisor, req: CreateRequest, *, say: Say = _quiet) -> hv_domains.Domain:
    """Make a VM from an image: linked-clone disk, seed ISO, definition, start.

    Each step registers its undo before it runs; any failure or Ctrl-C removes what was made.
    Raises InvalidInput / NotFound / Conflict before touching anything when the request is wrong.
    """
    memory_mib, disk_bytes, user_data, image_path = _validate(hv, req)
    vm_uuid = str(uuidlib.uuid4())
    host_cpus = hv_tuning.host_cpus(hv)
    # The limits are checked before the slow accelerator probe; the MAC is a placeholder for --net-bw.
    build_spec(req, memory_mib, "qemu", vm_uuid, "52:54:00:00:00:00", host_cpus)
    probe = accel.accelerator()
    if probe.accelerator == "tcg":
        say(f"warning: {accel.TCG_WARNING} ({probe.detail})")
    mac = leases.new_mac(hv, req.network) if req.network else None
    spec = build_spec(req, memory_mib, accel.domain_type(probe.accelerator), vm_uuid, mac, host_cpus)
    disks = pools.disks_pool(hv)
    with Undo(report=say) as undo:
        say("clone disk")
        undo.add(f"delete volume {disk_volume(req.name)}", lambda: _delete_volume(disks, disk_volume(req.name)))
        image_capacity = images.get(hv, req.image).info().capacity if req.image else 0
        capacity = max(image_capacity, disk_bytes or 0)
        disks.create_volume(
            xml_volume.volume_xml(disk_volume(req.name), capacity, "qcow2", image_path, "qcow2"),
            what=f"cloning image {req.image}",
        )
        faults.point("clone-disk")

        say("build seed")
        meta = f"instance-id: {vm_uuid}\nlocal-hostname: {req.name}\n"
        iso = build_nocloud_seed(meta, user_data)
        undo.add(f"delete volume {seed_volume(req.name)}", lambda: _delete_volume(disks, seed_volume(req.name)))
        seed = disks.create_volume(
            xml_volume.volume_xml(seed_volume(req.name), len(iso), "raw", None, None), what="creating the seed"
        )
        seed.upload(io.BytesIO(iso), len(iso))
        faults.point("build-seed")

        if req.network is not None and mac is not None and _has_subnet(hv, req.network):
            network = req.network
            say("reserve address")
            undo.add(f"release the address on {network}", lambda: leases.unregister(hv, network, mac))
            ip = req.ip or leases.pick_ip(hv_networks.lookup_network(hv, network))
            leases.register(hv, network, req.name, mac, ip)
            faults.point("reserve-address")

        say("define")
        undo.add(f"undefine VM {req.name}", lambda: _undefine_if_present(hv, req.name))
        dom = hv_domains.define(hv, domain_to_xml(spec))
        faults.point("define")

        if req.start:
            say("start")
            undo.add(f"kill VM {req.name}", lambda: _destroy_if_running(hv, req.name))
            dom.start()
            faults.point("start")
        undo.success()
    return dom


def _has_subnet(hv: Hypervisor, network: str) -> bool:
    """True for networks kvmhub hands addresses out on (not bridge/direct ones)."""
    from kvmhub.xml.network import network_subnet_from_xml

    return network_subnet_from_xml(hv_networks.lookup_network(hv, network).xml()) is not None


def _delete_volume(pool: hv_storage.Pool, vol: str) -> None:
    if pool.has_volume(vol):
        pool.volume(vol).delete()


def _undefine_if_present(hv: Hypervisor, name: str) -> None:
    if hv_domains.exists(hv, name):
        hv_domains.lookup(hv, name).undefine()


def _destroy_if_running(hv: Hypervisor, name: str) -> None:
    if hv_domains.exists(hv, name):
        dom = hv_domains.lookup(hv, name)
        if dom.is_active():
            dom.destroy()


