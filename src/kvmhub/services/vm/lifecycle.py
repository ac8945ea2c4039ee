"""VM lifecycle: list, show, start/stop/kill/reboot/pause/resume, remove (create is in create, rm in remove)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from kvmhub.errors import Conflict, KvmhubError, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.models import Phase, VMInfo
from kvmhub.models.nic import IPAddress
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects
from kvmhub.services.network import forwards
from kvmhub.services.vm import installer, listing_rows, lookup, readiness
from kvmhub.services.vm.limits import limits_of
from kvmhub.xml.domain import domain_from_xml, domain_is_managed
from kvmhub.xml.graphics import vnc_address

REPRESS_SECONDS = 10.0


get = lookup.get


def list_vms(hv: Hypervisor) -> list[VMInfo]:
    """Every VM on the host (see :func:`kvmhub.services.vm.listing_rows.rows`)."""
    return [VMInfo(**r) for r in listing_rows.rows(hv)]


def list_row(hv: Hypervisor, name: str) -> VMInfo | None:
    """VM ``name``'s row as :func:`list_vms` makes it, in a few calls; None when there is no such VM."""
    found = listing_rows.row(hv, name)
    return None if found is None else VMInfo(**found)


def show(hv: Hypervisor, name: str) -> VMInfo:
    dom = get(hv, name)
    live = dom.xml()
    spec = domain_from_xml(live)
    state = dom.state()
    running = state in ("running", "paused")
    inactive = dom.xml(inactive=True) if running else live  # a VM that does not run has only its definition
    ips: list[str] = []
    log_path = readiness.serial_log(dom, spec)
    phase = Phase.DEFINED
    if running:
        ips = [a.ip for a in readiness.addresses(dom, log_text=readiness.read_log(log_path))]
        phase = readiness.current_phase(dom, spec, log_path).phase
    vnc = _vnc(live if running else inactive, running)
    return VMInfo(
        name=spec.name,
        uuid=dom.uuid,
        state=state,
        phase=phase,
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
        boot=installer.boot_note(dom, running=running, xml=live if running else inactive),
        managed=domain_is_managed(inactive),
        limits=limits_of(spec),
        project=projects.project_of(spec.meta),
        user=spec.meta.user,
        tpm=spec.tpm,
        firmware=spec.firmware,
        secure_boot=spec.secure_boot,
    )


def _vnc(xml: str, running: bool) -> str | None:
    """Where a VNC viewer connects: the live port while the VM runs (``xml``: its live definition), else what the
    definition asks for."""
    found = vnc_address(xml)
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
                "shut off": f"start it: {{cmd:start {dom.name}}}",
                "paused": f"resume it: {{cmd:resume {dom.name}}}",
                "running": f"stop it: {{cmd:stop {dom.name}}}",
            }.get(state), code="vm.wrong_state",
        )
    return state


@contextmanager
def _state_change(hv: Hypervisor, kind: str, name: str, report: Reporter, *,
                  locked: bool = True) -> Iterator[hv_domains.Domain]:
    """A state change as a journalled operation under the VM's shared lock (the VM is checked first).

    It has no steps to undo: interrupted, it reads as such in the journal and the VM is in whatever state
    libvirt left it. Shared, so state changes do not wait for each other (libvirt orders them), only for work
    that needs the VM to itself (rm, clone, snapshots, backups, set). ``kill`` takes no lock: it must work while
    such work runs.
    """
    get(hv, name)
    locks = [LockSpec("vm", name, shared=True)] if locked else []
    with Operation(hv, kind, name, locks=locks, report=report) as op:
        yield get(hv, name)
        op.success()


def start(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.start", name, report) as dom:
        _require(dom, ("shut off", "crashed"), "start")
        dom.start()
        note = installer.after_start(hv, dom)
        if note is not None:
            report.note(note)
        try:
            forwards.sync(hv, name)
        except KvmhubError as exc:
            report.warn(f"port forwards of {name} not applied: {exc.message}")


def stop(hv: Hypervisor, name: str, *, force: bool = False, timeout: float = 60.0, report: Reporter = QUIET) -> str:
    """ACPI shutdown, waiting up to `timeout`; with force, kill after that. Returns how it ended."""
    with _state_change(hv, "vm.stop", name, report) as dom:
        return _stop(dom, name, force, timeout, report)


def _stop(dom: hv_domains.Domain, name: str, force: bool, timeout: float, report: Reporter) -> str:
    _require(dom, ("running", "paused", "shutting down"), "stop")
    if dom.state() == "paused":
        dom.resume()  # a paused guest cannot see the power button
    deadline = time.monotonic() + timeout
    pressed = 0.0
    while time.monotonic() < deadline:
        report.cancel.check()
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
        report.phase(f"no shutdown after {timeout:.0f} s: killing")
        dom.destroy()
        return "killed"
    raise OperationTimeout(
        f"VM {name} did not shut down within {timeout:.0f} s",
        cause="the guest ignored the ACPI power button (no acpid, or busy)",
        hint=f"{{cmd:stop {name} --force}} kills it after the timeout; {{cmd:kill {name}}} at once",
    )


def kill(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.kill", name, report, locked=False) as dom:
        _require(dom, ("running", "paused", "shutting down", "crashed", "suspended"), "kill")
        dom.destroy()


def reboot(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.reboot", name, report) as dom:
        _require(dom, ("running",), "reboot")
        dom.reboot()


def pause(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.pause", name, report) as dom:
        _require(dom, ("running",), "pause")
        dom.suspend()


def resume(hv: Hypervisor, name: str, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.resume", name, report) as dom:
        _require(dom, ("paused",), "resume")
        dom.resume()


def set_autostart(hv: Hypervisor, name: str, on: bool, *, report: Reporter = QUIET) -> None:
    with _state_change(hv, "vm.autostart", name, report) as dom:
        dom.set_autostart(on)


def wait(hv: Hypervisor, name: str, target: Phase, timeout: float,
         on_progress: Callable[[readiness.Progress], None] | None = None, *,
         report: Reporter = QUIET) -> readiness.Progress:
    """Wait for VM `name` to reach `target` (``report.cancel`` stops the wait); each new phase goes to
    ``on_progress`` and ``report``."""
    def seen(prog: readiness.Progress) -> None:
        label = prog.phase.value
        if prog.ips:
            label += " " + ", ".join(f"{a.ip} ({a.source})" for a in prog.ips)
        report.phase(label)
        if on_progress is not None:
            on_progress(prog)

    return readiness.wait_for(get(hv, name), target, timeout=timeout, on_progress=seen, cancel=report.cancel)


def default_wait_target(hv: Hypervisor, name: str) -> Phase:
    """What a bare ``start --wait`` waits for: network for a VM with a NIC, else booted (`create --wait` on a
    seeded VM waits for ready)."""
    spec = domain_from_xml(get(hv, name).xml())
    return Phase.NETWORK if spec.nics else Phase.BOOTED


def ip_addresses(hv: Hypervisor, name: str, *, wait_timeout: float | None = None,
                 report: Reporter = QUIET) -> list[IPAddress]:
    """VM `name`'s IP addresses: DHCP lease, then guest agent, then ARP (empty when none is known yet). With
    ``wait_timeout``, first waits (at most that many seconds) until it has one, and gives those found then."""
    if wait_timeout is not None:
        found = wait(hv, name, Phase.NETWORK, wait_timeout, report=report).ips
    else:
        dom = get(hv, name)
        found = readiness.addresses(dom, log_text=readiness.read_log(readiness.serial_log(dom)))
    return [IPAddress(ip=a.ip, prefix=a.prefix, mac=a.mac, iface=a.iface, source=a.source) for a in found]
