"""How far a VM has come: defined → running → booted → network → ready, and waiting for a phase.

Signals, in the order kvmhub trusts them:
- booted: the guest agent answers, or the boot marker is on the serial log;
- network: an IP is known (DHCP lease, guest agent, ARP) or the serial log reports one;
- ready: cloud-init finished: its result.json read through the guest agent (errors included), else a ready
  marker on the serial log (the appliance's, or the final_message kvmhub puts in the seed; with an agent
  answering, that one waits for result.json, which cloud-init writes just after it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kvmhub.errors import Conflict, KvmhubError, OperationFailed, OperationTimeout
from kvmhub.hv import host_root, is_local_uri
from kvmhub.hv.agent import Agent
from kvmhub.hv.domains import Address, Domain
from kvmhub.models import PHASE_ORDER, Phase, VMSpec
from kvmhub.ops.cancel import CancelToken
from kvmhub.services.vm.serial_marks import LOG_TAIL as _TAIL
from kvmhub.services.vm.serial_marks import MARK_BOOTED as MARK_BOOTED
from kvmhub.services.vm.serial_marks import MARK_NETWORK as MARK_NETWORK
from kvmhub.services.vm.serial_marks import MARK_READY as MARK_READY
from kvmhub.services.vm.serial_marks import SERIAL_LOG_DIR as SERIAL_LOG_DIR
from kvmhub.services.vm.serial_marks import quick_phase as quick_phase
from kvmhub.services.vm.serial_marks import read_log_or_none as read_log_or_none
from kvmhub.xml.domain import domain_from_xml

# cloud-init prints the final_message kvmhub puts in the seed just before it writes result.json
MARK_CLOUD_INIT = MARK_READY + " cloud-init "
POLL = 0.25
LOG_POLL = 0.02

_LOOK_AT = {
    Phase.RUNNING: "the VM never started: {cmd:show NAME} and libvirtd's log",
    Phase.BOOTED: "the guest never finished booting: read {cmd:console NAME --log}",
    Phase.NETWORK: "no IP came: is the guest's DHCP client running ({cmd:console NAME --log}), "
    "and the network's DHCP (`virsh net-dhcp-leases NET`)?",
    Phase.READY: "cloud-init never finished: read {cmd:console NAME --log} "
    "(inside the guest: /var/log/cloud-init-output.log)",
}


def serial_log(dom: Domain, spec: VMSpec | None = None) -> str | None:
    """The serial log's path as seen from here, when this host's files are reachable."""
    if not is_local_uri(dom.hv.uri):
        return None
    spec = spec or domain_from_xml(dom.xml())
    if spec.serial is None or not spec.serial.log_file:
        return None
    return host_root() + spec.serial.log_file


def read_log(path: str | None, limit: int = _TAIL) -> str:
    """The last ``limit`` bytes of the serial log (empty when there is none)."""
    return read_log_or_none(path, limit) or ""


def addresses(dom: Domain, *, log_text: str = "") -> list[Address]:
    """The guest's IPs: DHCP lease first, then the guest agent, then ARP, then the serial log."""
    for source in ("lease", "agent", "arp"):
        found = dom.addresses(source)
        if found:
            return found
    return _serial_addresses(log_text)


@dataclass
class Progress:
    phase: Phase
    elapsed: float
    ips: list[Address] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # cloud-init's, when it ended with errors


CLOUD_INIT_RESULT = "/run/cloud-init/result.json"


def cloud_init_errors(result: str) -> list[str]:
    """The errors in cloud-init's result.json (``v1.errors``; newer releases add ``v1.recoverable_errors``,
    which make it "degraded")."""
    try:
        v1 = json.loads(result).get("v1") or {}
    except (ValueError, AttributeError):
        return [f"{CLOUD_INIT_RESULT} is not JSON"]
    errors = [str(e) for e in v1.get("errors") or []]
    recoverable = v1.get("recoverable_errors") or {}
    if isinstance(recoverable, dict):
        errors += [f"{level}: {m}" for level, msgs in recoverable.items() for m in msgs or []]
    return errors


def read_guest_file(dom: Domain, path: str, limit: int = 256 * 1024) -> str | None:
    """A small file's text read through the guest agent; None when it does not exist (or no agent answers).
    Short timeouts: readiness asks this while it polls."""
    agent = Agent(dom)
    try:
        handle = agent.file_open(path, "r", timeout=5)
    except KvmhubError:
        return None
    try:
        return agent.file_read(handle, limit, timeout=5)[0].decode(errors="replace")
    except KvmhubError:
        return None
    finally:
        with contextlib.suppress(KvmhubError):  # the handle dies with the agent
            agent.file_close(handle, timeout=5)


def _serial_addresses(log_text: str) -> list[Address]:
    out = []
    for line in log_text.splitlines():
        if line.startswith(MARK_NETWORK):
            parts = line.split()
            if len(parts) >= 3:
                out.append(Address("", parts[2], 0, parts[1], "serial"))
    return out


def current_phase(dom: Domain, spec: VMSpec, log_path: str | None) -> Progress:
    """The phase the VM is in now.

    Network evidence must come from this boot: the guest agent or the serial log. A DHCP lease can be
    left over from the previous boot, so it counts only for guests without an agent channel that print no
    kvmhub marker (VMs made by other tools): for them a lease (or ARP entry) says booted and networked.
    """
    state = dom.state()
    if state not in ("running", "paused"):
        return Progress(Phase.DEFINED, 0.0)
    text = read_log(log_path)
    agent_up = spec.guest_agent and dom.agent_ping()
    phase = Phase.RUNNING
    ips: list[Address] = []
    if MARK_BOOTED in text or agent_up:
        phase = Phase.BOOTED
        ips = (dom.addresses("agent") if agent_up else []) or _serial_addresses(text)
    elif not spec.guest_agent:
        ips = dom.addresses("lease") or dom.addresses("arp")
        if ips:
            phase = Phase.BOOTED
    if phase is Phase.BOOTED and (ips or not spec.nics):
        phase = Phase.NETWORK
    errors: list[str] = []
    if MARK_READY in text:  # cloud-init's end, which comes after boot and network
        phase = Phase.READY
    if agent_up and phase is not Phase.RUNNING:  # a real cloud-init writes its result when it is done
        result = read_guest_file(dom, CLOUD_INIT_RESULT)
        if result is not None:
            phase, errors = Phase.READY, cloud_init_errors(result)
        elif phase is Phase.READY and MARK_CLOUD_INIT in text:  # its errors are not known yet
            phase = Phase.NETWORK if ips or not spec.nics else Phase.BOOTED
    return Progress(phase, 0.0, ips, errors)


def wait_for(
    dom: Domain,
    target: Phase,
    *,
    timeout: float,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> Progress:
    """Poll until the VM reaches `target`; raise OperationTimeout naming the phase that never came, Cancelled
    when ``cancel`` is set."""
    spec = domain_from_xml(dom.xml())
    log_path = serial_log(dom, spec)
    start = time.monotonic()
    last: Phase | None = None
    want = PHASE_ORDER.index(target)
    while True:
        if cancel is not None:
            cancel.check()
        try:
            prog = current_phase(dom, spec, log_path)
        except KvmhubError:
            prog = Progress(last or Phase.DEFINED, 0.0)
        prog.elapsed = time.monotonic() - start
        if prog.phase is Phase.DEFINED and last is not None:
            tail = "\n".join(read_log(log_path).strip().splitlines()[-5:])
            raise Conflict(
                f"VM {dom.name} stopped while waiting for it to be {target.value}",
                cause="the guest powered off or crashed" + (f"; last serial lines:\n{tail}" if tail else ""),
                hint=f"{{cmd:console {dom.name} --log}}", code="vm.wrong_state",
            )
        if on_progress and prog.phase is not last:
            on_progress(prog)
        last = prog.phase
        if prog.errors and want == PHASE_ORDER.index(Phase.READY):
            raise OperationFailed(
                f"cloud-init in VM {dom.name} finished with errors",
                cause="; ".join(prog.errors),
                hint=f"read /var/log/cloud-init.log in the guest, or {{cmd:console {dom.name} --log}}",
            )
        if PHASE_ORDER.index(prog.phase) >= want:
            return prog
        if prog.elapsed > timeout:
            missing = PHASE_ORDER[PHASE_ORDER.index(prog.phase) + 1]
            raise OperationTimeout(
                f"VM {dom.name} did not become {missing.value} within {timeout:g} s (it is {prog.phase.value})",
                cause=_LOOK_AT.get(missing, "").replace("NAME", dom.name),
                hint=f"wait longer with {{opt:timeout}}, or look: {{cmd:console {dom.name} --log}}",
            )
        _sleep_until_news(log_path, POLL)


def _sleep_until_news(log_path: str | None, limit: float) -> None:
    """Sleep up to `limit`, waking early when the serial log grows (a marker may have arrived)."""
    if not log_path:
        time.sleep(limit)
        return
    try:
        size = os.path.getsize(log_path)
    except OSError:
        size = -1
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(LOG_POLL)
        try:
            if os.path.getsize(log_path) != size:
                return
        except OSError:
            continue
