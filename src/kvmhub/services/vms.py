"""VM lifecycle: create (with undo), list, show, start/stop/kill/reboot/pause/resume, remove."""

from __future__ import annotations

import datetime as dt
import io
import os
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import storage as hv_storage
from kvmhub.models import DiskSource, DiskSpec, KvmhubMeta, NICSpec, Phase, SerialSpec, VMInfo, VMSpec
from kvmhub.services import accel, images, pools, readiness
from kvmhub.tools.seed import build_nocloud_seed
from kvmhub.undo import Undo
from kvmhub.validate import check_name, parse_size
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_from_xml, domain_is_managed, domain_to_xml

SERIAL_LOG_DIR = "/var/log/libvirt/qemu"
MAX_VCPUS = 512
REPRESS_SECONDS = 10.0
Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass
class CreateRequest:
    name: str
    image: str
    cpus: int = 1
    memory: str = "512M"
    disk: str | None = None
    network: str | None = None
    ssh_keys: list[Path] = field(default_factory=list)
    user_data: Path | None = None
    start: bool = True


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


def _validate(hv: Hypervisor, req: CreateRequest) -> tuple[int, int | None, str, str]:
    """Check everything before touching the host; returns (memory MiB, disk bytes, user-data, image path)."""
    check_name(req.name, "VM")
    if not 1 <= req.cpus <= MAX_VCPUS:
        raise InvalidInput(f"--cpus {req.cpus} is out of range", hint=f"1 to {MAX_VCPUS}")
    memory_mib = parse_size(req.memory, what="memory", default_unit="M") // 1024**2
    if memory_mib < 32:
        raise InvalidInput(f"--memory {req.memory} is too small", hint="at least 32M")
    disk = parse_size(req.disk, what="disk size", default_unit="G") if req.disk else None
    user_data = _user_data(req, _read_keys(req.ssh_keys))
    image_vol = images.get(hv, req.image)
    if req.network is not None:
        hv_networks.lookup_network(hv, req.network)
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


def build_spec(req: CreateRequest, memory_mib: int, domain_type: str, vm_uuid: str) -> VMSpec:
    disks_pool = pools.DISKS_POOL
    return VMSpec(
        name=req.name,
        uuid=vm_uuid,
        domain_type=domain_type,  # type: ignore[arg-type]
        vcpus=req.cpus,
        memory_mib=memory_mib,
        disks=[
            DiskSpec(target="vda", source=DiskSource(pool=disks_pool, volume=disk_volume(req.name))),
            DiskSpec(
                target="vdb",
                format="raw",
                readonly=True,
                source=DiskSource(pool=disks_pool, volume=seed_volume(req.name)),
            ),
        ],
        nics=[NICSpec(network=req.network)] if req.network else [],
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
    probe = accel.accelerator()
    if probe.accelerator == "tcg":
        say(f"warning: {accel.TCG_WARNING} ({probe.detail})")
    vm_uuid = str(uuidlib.uuid4())
    spec = build_spec(req, memory_mib, accel.domain_type(probe.accelerator), vm_uuid)
    disks = pools.disks_pool(hv)
    with Undo(report=say) as undo:
        say("clone disk")
        undo.add(f"delete volume {disk_volume(req.name)}", lambda: _delete_volume(disks, disk_volume(req.name)))
        image_capacity = images.get(hv, req.image).info().capacity
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


def get(hv: Hypervisor, name: str) -> hv_domains.Domain:
    check_name(name, "VM")
    try:
        return hv_domains.lookup(hv, name)
    except NotFound:
        raise NotFound(f"no VM named {name!r}", hint="list them: `kvmhub ls`") from None


def list_vms(hv: Hypervisor) -> list[VMInfo]:
    """Every VM on the host, in a constant number of libvirt calls plus one per running VM (for IPs)."""
    rows = hv_domains.bulk_stats(hv)
    flags = hv_domains.listing_flags(hv)
    out = []
    for row in rows:
        ips: list[str] = []
        if row.state in ("running", "paused"):
            dom = hv_domains.lookup(hv, row.name)
            ips = [a.ip for a in dom.addresses("lease")]
        out.append(
            VMInfo(
                name=row.name,
                uuid=row.uuid,
                state=row.state,
                persistent=row.name not in flags.transient,
                autostart=row.name in flags.autostart,
                vcpus=row.vcpus or 0,
                memory_mib=(row.memory_kib or 0) // 1024,
                domain_type="",
                ips=ips,
            )
        )
    return sorted(out, key=lambda v: v.name)


def show(hv: Hypervisor, name: str) -> VMInfo:
    dom = get(hv, name)
    spec = domain_from_xml(dom.xml())
    state = dom.state()
    ips: list[str] = []
    log_path = readiness.serial_log(dom, spec)
    if state in ("running", "paused"):
        ips = [a.ip for a in readiness.addresses(dom, log_text=readiness.read_log(log_path))]
    vnc = None
    if spec.graphics is not None and spec.graphics.port > 0:
        vnc = f"vnc://{spec.graphics.listen}:{spec.graphics.port}"
    return VMInfo(
        name=spec.name,
        uuid=dom.uuid,
        state=state,
        persistent=dom.is_persistent(),
        autostart=dom.autostart(),
        vcpus=spec.vcpus,
        memory_mib=spec.memory_mib,
        domain_type=spec.domain_type,
        ips=ips,
        image=spec.meta.image,
        disks=spec.disks,
        nics=spec.nics,
        serial_log=spec.serial.log_file if spec.serial else None,
        vnc=vnc,
        managed=domain_is_managed(dom.xml(inactive=True)),
    )


def _require(dom: hv_domains.Domain, allowed: tuple[str, ...], action: str) -> str:
    state = dom.state()
    if state not in allowed:
        raise Conflict(
            f"cannot {action} VM {dom.name}: it is {state}",
            cause=f"{action} needs a VM that is {' or '.join(allowed)}",
            hint={
                "shut off": f"start it: `kvmhub start {dom.name}`",
                "paused": f"resume it: `kvmhub resume {dom.name}`",
                "running": f"stop it: `kvmhub stop {dom.name}`",
            }.get(state),
        )
    return state


def start(hv: Hypervisor, name: str) -> None:
    dom = get(hv, name)
    _require(dom, ("shut off", "crashed"), "start")
    dom.start()


def stop(hv: Hypervisor, name: str, *, force: bool = False, timeout: float = 60.0, say: Say = _quiet) -> str:
    """ACPI shutdown, waiting up to `timeout`; with force, kill after that. Returns how it ended."""
    dom = get(hv, name)
    _require(dom, ("running", "paused", "shutting down"), "stop")
    if dom.state() == "paused":
        dom.resume()  # a paused guest cannot see the power button
    deadline = time.monotonic() + timeout
    pressed = 0.0
    while time.monotonic() < deadline:
        # press again now and then: a press before the guest's ACPI daemon runs is lost
        if time.monotonic() - pressed > REPRESS_SECONDS:
            try:
                dom.shutdown(mode="acpi")
            except Conflict:
                pass  # it went off between the check and the press
            pressed = time.monotonic()
        if not dom.is_active():
            return "shut down"
        time.sleep(0.25)
    if force:
        say(f"no shutdown after {timeout:.0f} s: killing")
        dom.destroy()
        return "killed"
    raise OperationTimeout(
        f"VM {name} did not shut down within {timeout:.0f} s",
        cause="the guest ignored the ACPI power button (no acpid, or busy)",
        hint=f"`kvmhub stop {name} --force` kills it after the timeout; `kvmhub kill {name}` at once",
    )


def kill(hv: Hypervisor, name: str) -> None:
    dom = get(hv, name)
    _require(dom, ("running", "paused", "shutting down", "crashed", "suspended"), "kill")
    dom.destroy()


def reboot(hv: Hypervisor, name: str) -> None:
    dom = get(hv, name)
    _require(dom, ("running",), "reboot")
    dom.reboot()


def pause(hv: Hypervisor, name: str) -> None:
    dom = get(hv, name)
    _require(dom, ("running",), "pause")
    dom.suspend()


def resume(hv: Hypervisor, name: str) -> None:
    dom = get(hv, name)
    _require(dom, ("paused",), "resume")
    dom.resume()


def set_autostart(hv: Hypervisor, name: str, on: bool) -> None:
    get(hv, name).set_autostart(on)


def remove(hv: Hypervisor, name: str, *, keep_disks: bool = False, say: Say = _quiet) -> list[str]:
    """Kill if running, undefine, and delete the volumes kvmhub made for it (never the image)."""
    dom = get(hv, name)
    spec = domain_from_xml(dom.xml(inactive=True))
    log_path = readiness.serial_log(dom, spec)
    if dom.is_active():
        dom.destroy()
    dom.undefine()
    removed = []
    if not keep_disks:
        for ref in spec.meta.owned_volumes:
            pool_name, _, vol = ref.partition("/")
            try:
                pool = hv_storage.lookup_pool(hv, pool_name)
                if pool.has_volume(vol):
                    pool.volume(vol).delete()
                    removed.append(ref)
            except KvmhubError as exc:
                say(f"warning: could not delete {ref}: {exc.message}")
    if log_path and os.path.exists(log_path):
        os.unlink(log_path)
    return removed


def wait(hv: Hypervisor, name: str, target: Phase, timeout: float,
         on_progress: Callable[[readiness.Progress], None] | None = None) -> readiness.Progress:
    return readiness.wait_for(get(hv, name), target, timeout=timeout, on_progress=on_progress)


def default_wait_target(hv: Hypervisor, name: str) -> Phase:
    spec = domain_from_xml(get(hv, name).xml())
    return Phase.NETWORK if spec.nics else Phase.BOOTED
