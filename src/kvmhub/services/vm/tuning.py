"""Resource limits: `kvmhub set` (live where QEMU allows, always persisted) and the same limits at `create`
(what `show` reports is in limits).

Every value is parsed and checked against the VM and the host before anything is changed, so a refused
request changes nothing. Each applied setting reports whether it took effect live or after a restart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from kvmhub.errors import Conflict, InvalidInput, KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import tuning as hv_tuning
from kvmhub.models import Bandwidth, CPUTune, IOTune, ProjectUse, VCPUPin, VMSpec
from kvmhub.models.requests_vm import Change, LimitsRequest, SetRequest
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.services import projects
from kvmhub.services.vm.lifecycle import get
from kvmhub.services.vm.limits import PERIOD_US, cap_percent
from kvmhub.validate import MAX_VCPUS, parse_cpuset, parse_size
from kvmhub.xml._util import serialize
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.tuning import dimm_element

MIN_QUOTA_US = 1_000
MIN_MEMORY_MIB = 32
DIMM_ALIGN_MIB = 128  # Linux hot-plugs memory in 128 MiB blocks on x86
SHARES_RANGE = (2, 262_144)
IO_WEIGHT_RANGE = (100, 1000)
_NONE = ("none", "off", "0", "unlimited")


def _refuse(what: str, value: object, valid: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput(f"{what} {value} is out of range", cause=f"valid: {valid}", hint=hint)


# --- parsing -----------------------------------------------------------------------------------------


def _split_target(text: str) -> tuple[str | None, str]:
    """'vda:10M' -> ('vda', '10M'); '10M' -> (None, '10M'). A MAC's colons stay with the target."""
    head, sep, tail = text.rpartition(":")
    if not sep:
        return None, text
    return head, tail


def _rate(text: str, what: str, *, size: bool) -> int:
    if text.strip().lower() in _NONE:
        return 0
    if size:
        return parse_size(text, what=what)
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"invalid {what} {text!r}", cause="an I/O rate is a whole number per second") from None
    if value < 0:
        raise _refuse(what, value, "0 (no limit) or more")
    return value


def parse_disk_limit(text: str, *, size: bool) -> tuple[str | None, dict[str, int]]:
    """'vda:10M' / 'read=5M,write=1M' / 'vdb:read=100' -> (disk or None for all, iotune fields)."""
    what = "{opt:disk_bps}" if size else "{opt:disk_iops}"
    unit = "bytes_sec" if size else "iops_sec"
    disk, spec = _split_target(text)
    fields: dict[str, int] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "total", part
        if key not in ("total", "read", "write"):
            raise InvalidInput(f"invalid {what} {text!r}", cause=f"unknown direction {key!r}",
                               hint=f"{what} [DISK:]VALUE or [DISK:]read=VALUE,write=VALUE")
        fields[f"{key}_{unit}"] = _rate(value, what, size=size)
    if "total_" + unit in fields and len(fields) > 1:
        raise InvalidInput(f"invalid {what} {text!r}", cause="a total limit excludes read/write limits")
    # libvirt refuses total together with read/write: setting one direction clears the other kind.
    if "total_" + unit in fields:
        fields.update({f"read_{unit}": 0, f"write_{unit}": 0})
    else:
        fields.setdefault(f"total_{unit}", 0)
    return disk, fields


def parse_net_limit(text: str) -> tuple[str | None, Bandwidth | None, dict[str, int]]:
    """'[NIC:]IN/OUT' (bytes/s sizes, empty = unchanged, 0 = none) -> (NIC, model, libvirt parameters)."""
    nic, spec = _split_target(text)
    inbound, sep, outbound = spec.partition("/")
    if not sep:
        raise InvalidInput(f"invalid {{opt:net_bw}} {text!r}", cause="give inbound/outbound, e.g. 10M/5M or 10M/",
                           hint="{opt:net_bw} [NIC:]IN/OUT, where NIC is a MAC address or an index from 0")
    params: dict[str, int] = {}
    for key, value in (("inbound", inbound), ("outbound", outbound)):
        if value.strip():
            params[f"{key}.average"] = (_rate(value, "{opt:net_bw}", size=True) + 999) // 1000
    return nic, None, params


def parse_pin(text: str, host_cpus: int, max_vcpus: int) -> tuple[int, set[int]]:
    """'VCPU:CPUSET' -> (vcpu, host CPUs), checked against the VM's vCPUs and the host's CPUs."""
    vcpu_text, sep, cpuset = text.partition(":")
    if not sep or not vcpu_text.strip().isdigit():
        raise InvalidInput(f"invalid {{opt:pin}} {text!r}", hint="{opt:pin} VCPU:CPUSET, e.g. 0:1 or 1:0-3,6")
    vcpu = int(vcpu_text)
    if vcpu >= max_vcpus:
        raise _refuse("{opt:pin} vCPU", vcpu, f"vCPU 0 to {max_vcpus - 1}")
    return vcpu, parse_cpuset(cpuset, host_cpus, what="{opt:pin}")


def _cap_quota(cap: float, vcpus: int) -> int:
    if cap == 0:
        return -1
    low, high = vcpus * MIN_QUOTA_US * 100 / PERIOD_US, 100.0 * vcpus
    if not low <= cap <= high:
        raise _refuse("{opt:cpu_cap}", f"{cap:g} %",
                      f"{low:g} % to {high:g} % (100 % per vCPU, {vcpus} vCPUs); 0 = no cap")
    return round(PERIOD_US * cap / 100 / vcpus)


def _check_range(what: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise _refuse(what, value, f"{bounds[0]} to {bounds[1]}")


def _memory_limit_kib(text: str, memory_mib: int) -> int | None:
    if text.strip().lower() in _NONE:
        return None
    mib = parse_size(text, what="{opt:memory_limit}", default_unit="M") // 1024**2
    if mib < memory_mib:
        raise _refuse("{opt:memory_limit}", text, f"at least the VM's memory ({memory_mib} MiB), or none",
                      hint="a hard limit below the guest's memory gets QEMU killed by the OOM killer")
    return mib * 1024


# --- create --------------------------------------------------------------------------------------------


def apply_to_spec(spec: VMSpec, req: LimitsRequest, host_cpus: int) -> VMSpec:
    """``spec`` with the limits of ``req`` written in (for `create`). Raises InvalidInput, changes nothing."""
    _check_range("{opt:cpu_weight}", req.cpu_weight, SHARES_RANGE)
    _check_range("{opt:io_weight}", req.io_weight, IO_WEIGHT_RANGE)
    max_vcpus = spec.max_vcpus or spec.vcpus
    tune = (spec.cputune or CPUTune()).model_copy(deep=True)
    if req.cpu_weight is not None:
        tune.shares = req.cpu_weight
    if req.cpu_cap is not None:
        tune.period, tune.quota = PERIOD_US, _cap_quota(req.cpu_cap, spec.vcpus)
    for text in req.pins:
        vcpu, cpus = parse_pin(text, host_cpus, max_vcpus)
        tune.vcpupin = [p for p in tune.vcpupin if p.vcpu != vcpu] + [VCPUPin(vcpu=vcpu, cpuset=_cpuset(cpus))]
    if req.emulator_pin is not None:
        tune.emulatorpin = _cpuset(parse_cpuset(req.emulator_pin, host_cpus, what="{opt:emulator_pin}"))
    update: dict[str, object] = {}
    if tune != CPUTune():
        update["cputune"] = tune
    if req.memory_limit is not None:
        kib = _memory_limit_kib(req.memory_limit, spec.max_memory_mib or spec.memory_mib)
        update["memory_limit_mib"] = None if kib is None else kib // 1024
    if req.io_weight is not None:
        update["io_weight"] = req.io_weight
    disks = [d.model_copy(deep=True) for d in spec.disks]
    for texts, size in ((req.disk_bps, True), (req.disk_iops, False)):
        for text in texts:
            target, fields = parse_disk_limit(text, size=size)
            for disk in _pick_disks(disks, target):
                merged = {**(disk.iotune or IOTune()).model_dump(), **{k: v or None for k, v in fields.items()}}
                disk.iotune = IOTune.model_validate(merged)
    nics = [n.model_copy(deep=True) for n in spec.nics]
    for text in req.net_bw:
        target, _bw, params = parse_net_limit(text)
        for nic in _pick_nics(nics, target):
            bw = (nic.bandwidth or Bandwidth()).model_copy()
            bw.inbound_kbs = params.get("inbound.average", bw.inbound_kbs or 0) or None
            bw.outbound_kbs = params.get("outbound.average", bw.outbound_kbs or 0) or None
            nic.bandwidth = bw
    update.update(disks=disks, nics=nics)
    return spec.model_copy(update=update)


def _cpuset(cpus: set[int]) -> str:
    """{0, 1, 2, 5} -> '0-2,5'."""
    out: list[str] = []
    for cpu in sorted(cpus):
        if out and "-" not in out[-1].split(",")[-1] and int(out[-1]) == cpu - 1:
            out[-1] = f"{out[-1]}-{cpu}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == cpu - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{cpu}"
        else:
            out.append(str(cpu))
    return ",".join(out)


def _pick_disks(disks: list, target: str | None) -> list:  # type: ignore[type-arg]
    if target is None:
        chosen = [d for d in disks if d.device == "disk" and not d.readonly]
        if not chosen:
            raise InvalidInput("the VM has no writable disk to limit", hint="name one: {opt:disk_bps} DISK:VALUE")
        return chosen
    chosen = [d for d in disks if d.target == target]
    if not chosen:
        names = ", ".join(d.target for d in disks) or "none"
        raise InvalidInput(f"the VM has no disk {target!r}", cause=f"its disks: {names}")
    return chosen


def _pick_nics(nics: list, target: str | None) -> list:  # type: ignore[type-arg]
    if not nics:
        raise InvalidInput("the VM has no NIC to limit")
    if target is None:
        return nics
    if target.isdigit():
        if int(target) >= len(nics):
            raise _refuse("NIC index", target, f"0 to {len(nics) - 1}")
        return [nics[int(target)]]
    chosen = [n for n in nics if (n.mac or "").lower() == target.lower()]
    if not chosen:
        raise InvalidInput(f"the VM has no NIC with MAC {target}",
                           cause="its NICs: " + ", ".join(n.mac or "?" for n in nics))
    return chosen


# --- set -----------------------------------------------------------------------------------------------


Step = Callable[[], Change]


@dataclass
class _Plan:
    """Checked actions, run only once every value of the request has passed."""

    steps: list[tuple[str, Step]] = field(default_factory=list)

    def add(self, label: str, action: Step) -> None:
        self.steps.append((label, action))


def _then(action: Callable[[], None], change: Change) -> Step:
    def run() -> Change:
        action()
        return change

    return run


def _specs(dom: hv_domains.Domain) -> tuple[VMSpec, VMSpec, bool]:
    running = dom.is_active()
    now = domain_from_xml(dom.xml())
    config = domain_from_xml(dom.xml(inactive=True)) if dom.is_persistent() else now
    return now, config, running


def _plan_cpus(dom: hv_domains.Domain, req: SetRequest, now: VMSpec, cfg: VMSpec, running: bool,
               plan: _Plan) -> int:
    """Plan --max-cpus / --cpus; returns the vCPU count the VM will have."""
    max_cfg = cfg.max_vcpus or cfg.vcpus
    max_live = now.max_vcpus or now.vcpus
    if req.max_cpus is not None:
        if not 1 <= req.max_cpus <= MAX_VCPUS or req.max_cpus < (req.cpus or 1):
            raise _refuse("{opt:max_cpus}", req.max_cpus, f"{req.cpus or 1} to {MAX_VCPUS}")
        if req.cpus is None and req.max_cpus < cfg.vcpus:
            raise _refuse("{opt:max_cpus}", req.max_cpus, f"{cfg.vcpus} (the VM's vCPUs) to {MAX_VCPUS}")
        n_max = req.max_cpus
        plan.add("max vCPUs", _then(lambda: hv_tuning.set_max_vcpus(dom, n_max),
            Change(setting="max vCPUs", value=str(n_max), live=False)))
        max_cfg = req.max_cpus
    if req.cpus is None:
        return now.vcpus
    cpus = req.cpus
    if not 1 <= cpus <= max_cfg:
        raise _refuse("{opt:cpus}", cpus, f"1 to {max_cfg} (the VM's maximum)",
                      hint=f"raise the maximum: {{cmd:set {dom.name} --max-cpus N}} (after a restart)")
    live = running and cpus <= max_live

    def apply() -> Change:
        if running and not live:
            hv_tuning.set_vcpus(dom, cpus, live=False)
            return Change(setting="vCPUs", value=str(cpus), live=False,
                          note=f"above the running maximum of {max_live}")
        onlined = hv_tuning.set_vcpus(dom, cpus, live=live)
        note = "" if not live or onlined or cpus <= now.vcpus else "the guest must online the new CPUs itself"
        return Change(setting="vCPUs", value=str(cpus), live=live, note=note)

    plan.add("vCPUs", apply)
    return cpus if live or not running else now.vcpus


def _plan_memory(dom: hv_domains.Domain, text: str, now: VMSpec, cfg: VMSpec, running: bool,
                 plan: _Plan) -> None:
    mib = parse_size(text, what="memory", default_unit="M") // 1024**2
    ceiling = cfg.max_memory_mib or cfg.memory_mib
    if not MIN_MEMORY_MIB <= mib <= ceiling:
        raise _refuse("{opt:memory}", text, f"{MIN_MEMORY_MIB} MiB to {ceiling} MiB (the VM's maximum)",
                      hint="the ceiling for memory hotplug is set at create: {cmd:create ... --max-memory SIZE}")
    total = now.memory_mib
    if mib <= total:
        plan.add("memory", _then(lambda: hv_tuning.set_balloon(dom, mib * 1024, live=running),
            Change(setting="memory", value=f"{mib} MiB", live=running, note="balloon" if running else "")))
        return
    dimm = min(-(-(mib - total) // DIMM_ALIGN_MIB) * DIMM_ALIGN_MIB, ceiling - total)
    if len(now.dimms_mib) >= now.memory_slots:
        raise InvalidInput(f"cannot add memory to {dom.name}: all {now.memory_slots} memory slots are used",
                           hint="stop the VM and set the memory in its definition instead")

    def apply() -> Change:
        known = -1
        if running:
            try:
                known = len(hv_tuning.guest_memory_blocks(dom))
            except KvmhubError:
                pass
        hv_tuning.attach_dimm(dom, serialize(dimm_element(dimm)), live=running)
        note = f"added a {dimm} MiB DIMM"
        target = mib
        if running:
            try:
                onlined = known >= 0 and hv_tuning.online_guest_memory(dom, known) > 0
            except KvmhubError:
                onlined = False
            if not onlined:
                # Ballooning up to memory the guest has not onlined would squeeze it into what it has.
                target = min(mib, total)
                note += "; the guest did not online it (no agent?): online it in the guest, then set --memory again"
        hv_tuning.set_balloon(dom, target * 1024, live=running)
        return Change(setting="memory", value=f"{mib} MiB", live=running, note=note)

    plan.add("memory", apply)


def _plan_limits(dom: hv_domains.Domain, req: LimitsRequest, now: VMSpec, vcpus: int, running: bool,
                 host: int, plan: _Plan, keep_cap: bool) -> None:
    _check_range("{opt:cpu_weight}", req.cpu_weight, SHARES_RANGE)
    _check_range("{opt:io_weight}", req.io_weight, IO_WEIGHT_RANGE)
    if req.cpu_weight is not None:
        w = req.cpu_weight
        plan.add("CPU weight", _then(lambda: hv_tuning.set_scheduler(dom, {"cpu_shares": w}, live=running),
            Change(setting="CPU weight", value=str(w), live=running)))
    tune = now.cputune or CPUTune()
    old_cap = cap_percent(tune, now.vcpus)
    cap = req.cpu_cap if req.cpu_cap is not None else (old_cap if keep_cap and old_cap else None)
    if cap is not None:
        quota, note = _cap_quota(cap, vcpus), "" if req.cpu_cap is not None else f"kept for {vcpus} vCPUs"
        params = {"vcpu_period": PERIOD_US, "vcpu_quota": quota}
        plan.add("CPU cap", _then(lambda: hv_tuning.set_scheduler(dom, params, live=running),
            Change(setting="CPU cap", value=f"{cap:g} %" if quota > 0 else "none", live=running, note=note)))
    max_vcpus = now.max_vcpus or now.vcpus
    for text in req.pins:
        vcpu, cpus = parse_pin(text, host, max_vcpus)
        plan.add("pin", _pin_step(dom, vcpu, cpus, host, running and vcpu < now.vcpus))
    if req.emulator_pin is not None:
        emu = parse_cpuset(req.emulator_pin, host, what="{opt:emulator_pin}")
        plan.add("emulator pin", _then(lambda: hv_tuning.pin_emulator(dom, emu, host, live=running),
            Change(setting="emulator pin", value=_cpuset(emu), live=running)))
    if req.memory_limit is not None:
        kib = _memory_limit_kib(req.memory_limit, now.memory_mib)
        shown = "none" if kib is None else f"{kib // 1024} MiB"
        plan.add("memory limit", _then(lambda: hv_tuning.set_memory_limit(dom, kib, live=running),
            Change(setting="memory limit", value=shown, live=running)))
    if req.io_weight is not None:
        iw = req.io_weight
        plan.add("I/O weight", _then(lambda: hv_tuning.set_io_weight(dom, iw, live=running),
            Change(setting="I/O weight", value=str(iw), live=running)))
    for texts, size in ((req.disk_bps, True), (req.disk_iops, False)):
        for text in texts:
            target, fields = parse_disk_limit(text, size=size)
            for disk in _pick_disks(now.disks, target):
                plan.add("disk", _disk_step(dom, disk.target, fields, running))
    for text in req.net_bw:
        target, _bw, params = parse_net_limit(text)
        for nic in _pick_nics(now.nics, target):
            if not nic.mac:
                raise InvalidInput("cannot limit a NIC without a MAC address")
            plan.add("net", _net_step(dom, nic.mac, params, running))


def _pin_step(dom: hv_domains.Domain, vcpu: int, cpus: set[int], host: int, live: bool) -> Step:
    def apply() -> Change:
        hv_tuning.pin_vcpu(dom, vcpu, cpus, host, live=live)
        return Change(setting=f"vCPU {vcpu} pinned to", value=_cpuset(cpus), live=live)

    return apply


def _disk_step(dom: hv_domains.Domain, disk: str, fields: dict[str, int], live: bool) -> Step:
    def apply() -> Change:
        hv_tuning.set_block_iotune(dom, disk, fields, live=live)
        shown = ", ".join(f"{k.replace('_sec', '/s')}={v or 'none'}" for k, v in fields.items() if v) or "none"
        return Change(setting=f"disk {disk}", value=shown, live=live)

    return apply


def _net_step(dom: hv_domains.Domain, mac: str, params: dict[str, int], live: bool) -> Step:
    def apply() -> Change:
        hv_tuning.set_bandwidth(dom, mac, params, live=live)
        shown = ", ".join(f"{k.split('.')[0]} {v} KB/s" if v else f"{k.split('.')[0]} none" for k, v in params.items())
        return Change(setting=f"NIC {mac}", value=shown, live=live)

    return apply


def set_limits(hv: Hypervisor, name: str, req: SetRequest) -> list[Change]:
    """Apply ``req`` to VM ``name``: live when it runs and QEMU can, always persisted.

    Everything is checked first (InvalidInput with the valid range, nothing changed). A libvirt failure
    part-way raises with the settings already applied named in its cause.
    """
    dom = get(hv, name)
    if dom.state() in ("shutting down", "crashed"):
        raise Conflict(f"cannot change VM {name}: it is {dom.state()}", hint="wait for it to stop, or kill it",
                       code="vm.wrong_state")
    now, cfg, running = _specs(dom)
    plan = _Plan()
    if req.autostart is not None:
        on = req.autostart
        change = Change(setting="autostart", value="on" if on else "off", live=True)
        plan.add("autostart", _then(lambda: dom.set_autostart(on), change))
    vcpus = _plan_cpus(dom, req, now, cfg, running, plan)
    if req.memory is not None:
        _plan_memory(dom, req.memory, now, cfg, running, plan)
    host = hv_tuning.host_cpus(hv)
    _plan_limits(dom, req, now, vcpus, running, host, plan, keep_cap=vcpus != now.vcpus)
    if not plan.steps:
        raise InvalidInput("nothing to set", hint=f"see {{cmd:set --help}}, e.g. {{cmd:set {name} --cpus 2}}")
    done: list[Change] = []
    project = projects.project_of(cfg.meta)
    more_cpus = (req.max_cpus or 0) - (cfg.max_vcpus or cfg.vcpus)
    with Operation(hv, "vm.set", name, locks=[LockSpec("vm", name), projects.lock(project)]) as op:
        if more_cpus > 0:
            projects.check(hv, project, ProjectUse(cpus=more_cpus))
        # settings are not undone (a live change may not be reversible); the old values stay in the journal
        op.add(f"settings before: {_before(cfg)}")
        for label, action in plan.steps:
            op.add(f"set {label}")
            try:
                done.append(action())
            except KvmhubError as exc:
                if done:
                    exc.cause = (exc.cause + "; " if exc.cause else "") + "already applied: " + ", ".join(
                        c.setting for c in done) + f"; not applied: {label} and after"
                raise
        op.success()
    return done


_RECORDED = {"vcpus", "max_vcpus", "memory_mib", "current_memory_mib", "max_memory_mib", "memory_slots", "dimms_mib",
             "memory_limit_mib", "cputune"}


def _before(cfg: VMSpec) -> str:
    """The persistent settings `set` may change, as JSON (what an interrupted set is reported against)."""
    return json.dumps(cfg.model_dump(mode="json", include=_RECORDED), sort_keys=True)
