"""VM lifecycle: list, show, start/stop/kill/reboot/pause/resume, remove (create is in vm_create)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kvmhub.errors import Conflict, KvmhubError, NotFound, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.models import Phase, VMInfo, VMSpec
from kvmhub.reporting import Say
from kvmhub.reporting import quiet as _quiet
from kvmhub.validate import check_name

if TYPE_CHECKING:
    from kvmhub.services import readiness

REPRESS_SECONDS = 10.0


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
    from kvmhub.services import installer, readiness
    from kvmhub.services.tuning import limits_of
    from kvmhub.xml.domain import domain_from_xml, domain_is_managed

    dom = get(hv, name)
    spec = domain_from_xml(dom.xml())
    state = dom.state()
    ips: list[str] = []
    log_path = readiness.serial_log(dom, spec)
    if state in ("running", "paused"):
        ips = [a.ip for a in readiness.addresses(dom, log_text=readiness.read_log(log_path))]
    vnc = _vnc(dom, state)
    return VMInfo(
        name=spec.name,
        uuid=dom.uuid,
        state=state,
        persistent=dom.is_persistent(),
        autostart=dom.autostart(),
        vcpus=spec.vcpus,
        memory_mib=spec.memory_mib,
        domain_type=spec.domain_type,
        machine=spec.machine,
        ips=ips,
        image=spec.meta.image,
        os=spec.meta.os,
        disks=spec.disks,
        nics=spec.nics,
        serial_log=spec.serial.log_file if spec.serial else None,
        vnc=vnc,
        boot=installer.boot_note(dom, running=state in ("running", "paused")),
        managed=domain_is_managed(dom.xml(inactive=True)),
        limits=limits_of(spec),
    )


def _vnc(dom: hv_domains.Domain, state: str) -> str | None:
    """Where a VNC viewer connects: the live port while the VM runs, else what the definition asks for."""
    from kvmhub.xml.graphics import vnc_address

    running = state in ("running", "paused")
    found = vnc_address(dom.xml() if running else dom.xml(inactive=True))
    if found is None:
        return None
    listen, port = found
    if port > 0:
        return f"{listen}:{port}"
    return f"{listen}, port picked at start" if not running else f"{listen}, port not assigned"


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


def start(hv: Hypervisor, name: str, *, say: Say = _quiet) -> None:
    from kvmhub.services import forwards, installer

    dom = get(hv, name)
    _require(dom, ("shut off", "crashed"), "start")
    dom.start()
    note = installer.after_start(hv, dom)
    if note is not None:
        say(note)
    try:
        forwards.sync(hv, name)
    except KvmhubError as exc:
        say(f"warning: port forwards of {name} not applied: {exc.message}")


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
    from kvmhub.services import leases
    from kvmhub.xml.domain import domain_from_xml, domain_is_managed

    dom = get(hv, name)
    xml = dom.xml(inactive=True)
    spec = domain_from_xml(xml)
    log_path = _own_serial_log(dom, spec, domain_is_managed(xml))
    if dom.is_active():
        dom.destroy()
    if spec.meta.forwards:
        from kvmhub.services import forwards

        try:
            forwards.drop(hv, name)
        except KvmhubError as exc:
            say(f"warning: could not remove the port forwards of {name}: {exc.message}")
    dom.undefine()
    removed = []
    for nic in spec.nics:
        if nic.network and nic.mac:
            try:
                removed += leases.unregister(hv, nic.network, nic.mac)
            except KvmhubError as exc:
                say(f"warning: could not release {nic.mac} on {nic.network}: {exc.message}")
    if keep_disks:
        for secret in spec.meta.owned_secrets:
            say(f"kept the key of its encrypted disk in libvirt secret {secret}")
    else:
        removed += _delete_owned(hv, spec, say)
    if log_path and os.path.exists(log_path):
        os.unlink(log_path)
    return removed


def _own_serial_log(dom: hv_domains.Domain, spec: VMSpec, managed: bool) -> str | None:
    """The serial log `rm` deletes: only the one kvmhub made, for a VM with kvmhub metadata, at the path kvmhub
    gives it (``/var/log/libvirt/qemu/NAME-serial.log``). Any other path a definition names is left alone."""
    from kvmhub.services import readiness
    from kvmhub.services.vm_create import SERIAL_LOG_DIR

    if not managed or spec.serial is None or spec.serial.log_file != f"{SERIAL_LOG_DIR}/{spec.name}-serial.log":
        return None
    return readiness.serial_log(dom, spec)


def _delete_owned(hv: Hypervisor, spec: VMSpec, say: Say) -> list[str]:
    """Delete the volumes kvmhub made for removed VM `spec` that no other VM uses, then the keys of the
    disks whose volume went; say what is kept and why. Returns what was deleted."""
    from kvmhub.services import clone, encryption

    removed: list[str] = []
    gone: set[str] = set()
    backings = []
    users = _volume_users(hv, spec.meta.owned_volumes) if spec.meta.owned_volumes else {}
    for ref in spec.meta.owned_volumes:
        if users.get(ref):
            say(f"kept {ref}: VM {', '.join(users[ref])} still uses it")
            continue
        pool_name, _, vol = ref.partition("/")
        try:
            pool = hv_storage.lookup_pool(hv, pool_name)
            if pool.has_volume(vol):
                backings.append(clone.backing_path(hv, ref) or "")
                pool.volume(vol).delete()
                removed.append(ref)
            gone.add(ref)
        except KvmhubError as exc:
            say(f"warning: could not delete {ref}: {exc.message}")
    removed += clone.release_bases(hv, backings, say)  # frozen bases no other disk sits on any more
    keyed = {d.encryption_secret: f"{d.source.pool}/{d.source.volume}" for d in spec.disks if d.encryption_secret}
    for secret in spec.meta.owned_secrets:
        if keyed.get(secret) not in gone:  # the key opens a volume that is still there
            say(f"kept the key of {keyed.get(secret, 'a kept disk')} in libvirt secret {secret}")
            continue
        try:
            encryption.delete_secret(hv, secret)
            removed.append(f"secret {secret}")
        except KvmhubError as exc:
            say(f"warning: could not delete secret {secret}: {exc.message}")
    return removed


def _volume_users(hv: Hypervisor, refs: list[str]) -> dict[str, list[str]]:
    """The VMs whose disks (or their backing chains) or direct-boot kernel and initrd use each ``pool/vol``."""
    from kvmhub.services import storage_usage
    from kvmhub.xml._util import parse

    usage = storage_usage.scan(hv)
    boot_files: dict[str, set[str]] = {}
    for dom in hv_domains.list_all(hv):
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
        vms = set(usage.vms_using(pool_name, vol, path))
        if path is not None:
            vms |= {vm for vm, files in boot_files.items() if path in files}
        out[ref] = sorted(vms)
    return out


def wait(hv: Hypervisor, name: str, target: Phase, timeout: float,
         on_progress: Callable[[readiness.Progress], None] | None = None) -> readiness.Progress:
    from kvmhub.services import readiness

    return readiness.wait_for(get(hv, name), target, timeout=timeout, on_progress=on_progress)


def default_wait_target(hv: Hypervisor, name: str) -> Phase:
    from kvmhub.xml.domain import domain_from_xml

    spec = domain_from_xml(get(hv, name).xml())
    return Phase.NETWORK if spec.nics else Phase.BOOTED
