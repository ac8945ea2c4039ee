"""Resource limits through libvirt: vCPU/memory hotplug, scheduler, pinning, memtune, blkio, iotune, bandwidth.

Every setter applies to the running domain first (``VIR_DOMAIN_AFFECT_LIVE``) and then to its persistent
definition (``VIR_DOMAIN_AFFECT_CONFIG``), so a live failure leaves the definition untouched. libvirt-python
reads the parameter types with the same flags before setting, and that getter refuses LIVE|CONFIG together,
hence two calls rather than one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import libvirt

from kvmhub.errors import HostProblem, KvmhubError
from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.domains import Domain

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
MEMORY_UNLIMITED_KIB = 9007199254740991

_CGROUP_HINTS = {
    "cpu": "mount it: `mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu` (cgroup v1), or add +cpu to the "
    "parent's cgroup.subtree_control (v2); then restart libvirtd",
    "cpuset": "mount it: `mount -t cgroup -o cpuset cgroup /sys/fs/cgroup/cpuset` (cgroup v1), or add +cpuset "
    "to the parent's cgroup.subtree_control (v2); then restart libvirtd",
    "memory": "boot with `cgroup_enable=memory` and mount it: `mount -t cgroup -o memory cgroup "
    "/sys/fs/cgroup/memory` (v1), or add +memory to cgroup.subtree_control (v2); then restart libvirtd",
    "blkio": "mount it: `mount -t cgroup -o blkio cgroup /sys/fs/cgroup/blkio` (v1), or add +io to "
    "cgroup.subtree_control (v2); the weight also needs the BFQ I/O scheduler on the disk",
}
_CGROUP_PATTERNS = (
    (re.compile(r"cgroup (cpu|cpuset|memory|blkio)\b.*(not mounted|not available)", re.I), None),
    (re.compile(r"(cpu|cpuset|memory|blkio) controller.*(not mounted|not available|not supported)", re.I), None),
    (re.compile(r"blkio.*(not available|not supported)|block i/o tuning is not available", re.I), "blkio"),
    (re.compile(r"memory cgroup is not available|memory tuning is not available", re.I), "memory"),
    (re.compile(r"cpu tuning is not available|cpu shares tuning is not available", re.I), "cpu"),
)


def _host_problem(err: KvmhubError) -> KvmhubError:
    """A clearer error when libvirt's refusal comes from what the host lacks (cgroups, tc, rlimits)."""
    text = err.original or err.message
    for pattern, fixed in _CGROUP_PATTERNS:
        m = pattern.search(text)
        if m:
            controller = fixed or m.group(1).lower()
            return HostProblem(
                f"{err.message.split(':')[0]}: the host has no usable '{controller}' cgroup controller",
                cause=f"libvirt enforces this limit through the {controller} cgroup controller",
                hint=_CGROUP_HINTS[controller],
                original=text,
            )
    if re.search(r"qdisc kind is unknown|failed to load tc action|cannot find specified qdisc", text, re.I):
        return HostProblem(
            f"{err.message.split(':')[0]}: the host kernel lacks the traffic-control modules for bandwidth limits",
            cause="libvirt shapes NIC bandwidth with tc: the htb and sfq qdiscs, the u32 filter, the police action",
            hint="load them: `modprobe -a sch_htb sch_sfq cls_u32 act_police` (kernel options "
            "CONFIG_NET_SCH_HTB, CONFIG_NET_SCH_SFQ, CONFIG_NET_CLS_U32, CONFIG_NET_ACT_POLICE)",
            original=text,
        )
    if re.search(r"cannot limit locked memory", text, re.I):
        return HostProblem(
            f"{err.message.split(':')[0]}: libvirt may not raise the VM's locked-memory limit",
            cause="with a memory hard limit and memory hotplug, libvirt sets QEMU's RLIMIT_MEMLOCK to the hard "
            "limit; this host refuses (libvirtd lacks CAP_SYS_RESOURCE, e.g. inside a container)",
            hint="drop the memory limit ({cmd:set NAME --memory-limit none}) before adding memory, or run "
            "libvirtd with CAP_SYS_RESOURCE",
            original=text,
        )
    return err


def _call(dom: Domain, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return dom.call(what, fn, *args)
    except KvmhubError as exc:
        raise _host_problem(exc) from exc


def _live_then_config(dom: Domain, what: str, live: bool, fn: Callable[..., Any], *args: Any) -> None:
    if live:
        _call(dom, what, fn, *args, LIVE)
    if not live or dom.is_persistent():
        _call(dom, what, fn, *args, CONFIG)


def host_cpus(hv: Hypervisor) -> int:
    """How many CPUs the host has (the valid pinning targets are 0 .. n-1)."""
    count, _map, _online = hv.call(hv.conn.getCPUMap, 0, what="reading the host CPUs", retry=True)
    return int(count)


def _cpumap(cpus: set[int], total: int) -> tuple[bool, ...]:
    return tuple(i in cpus for i in range(total))


def set_vcpus(dom: Domain, count: int, *, live: bool, timeout: float = 30.0) -> bool:
    """Set the vCPU count; live it hot-plugs and asks the guest agent to online them.

    Returns whether the guest onlined them (False when it has no agent; the guest must online them itself).
    """
    _live_then_config(dom, "setting the vCPUs of", live, dom.handle.setVcpusFlags, count)
    if not live:
        return False
    # The guest learns of new vCPUs from an ACPI event some time after libvirt returns: retry until online.
    deadline = time.monotonic() + timeout
    while True:
        try:
            _call(dom, "onlining vCPUs in", dom.handle.setVcpusFlags, count, libvirt.VIR_DOMAIN_VCPU_GUEST)
            online = _call(dom, "reading the vCPUs of", dom.handle.guestVcpus).get("online", "")
            if _cpuset_size(str(online)) >= count:
                return True
        except KvmhubError:
            if time.monotonic() >= deadline:
                return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _cpuset_size(text: str) -> int:
    """'0-2,5' -> 4."""
    size = 0
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        size += int(high or low) - int(low) + 1
    return size


def set_max_vcpus(dom: Domain, count: int) -> None:
    """Set the vCPU hotplug ceiling in the definition (used from the next start)."""
    _call(dom, "setting the maximum vCPUs of", dom.handle.setVcpusFlags, count,
          CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)


def set_balloon(dom: Domain, kib: int, *, live: bool) -> None:
    """Set the balloon target (what the guest may use), live and persisted."""
    _live_then_config(dom, "setting the memory of", live, dom.handle.setMemoryFlags, kib)


def attach_dimm(dom: Domain, xml: str, *, live: bool) -> None:
    """Hot-plug (or, shut off, add) one DIMM device."""
    flags = (LIVE | CONFIG) if live and dom.is_persistent() else (LIVE if live else CONFIG)
    _call(dom, "adding memory to", dom.handle.attachDeviceFlags, xml, flags)


def guest_memory_blocks(dom: Domain) -> list[dict[str, Any]]:
    """The guest's memory blocks, as its agent reports them."""
    return list(dom.agent_command({"execute": "guest-get-memory-blocks"}, timeout=10) or [])


def online_guest_memory(dom: Domain, known: int, timeout: float = 30.0) -> int:
    """Wait until the guest sees more than ``known`` memory blocks, then online the offline ones.

    The guest learns of a DIMM from an ACPI event some time after libvirt returns; returns how many
    blocks were onlined (0 when none showed up in time).
    """
    deadline = time.monotonic() + timeout
    blocks = guest_memory_blocks(dom)
    while len(blocks) <= known and time.monotonic() < deadline:
        time.sleep(0.5)
        blocks = guest_memory_blocks(dom)
    offline = [{"phys-index": b["phys-index"], "online": True} for b in blocks if not b.get("online")]
    if offline:
        dom.agent_command({"execute": "guest-set-memory-blocks", "arguments": {"mem-blks": offline}}, timeout=20)
    return len(offline)


def set_scheduler(dom: Domain, params: dict[str, int], *, live: bool) -> None:
    """Set ``cpu_shares`` / ``vcpu_period`` / ``vcpu_quota``."""
    _live_then_config(dom, "setting the CPU scheduler of", live, dom.handle.setSchedulerParametersFlags, params)


def scheduler(dom: Domain, *, live: bool) -> dict[str, int]:
    """libvirt's view of the scheduler parameters."""
    got = _call(dom, "reading the CPU scheduler of", dom.handle.schedulerParametersFlags, LIVE if live else CONFIG)
    return {str(k): int(v) for k, v in got.items()}


def pin_vcpu(dom: Domain, vcpu: int, cpus: set[int], total: int, *, live: bool) -> None:
    """Pin one vCPU to the host CPUs ``cpus``."""
    _live_then_config(dom, "pinning a vCPU of", live, dom.handle.pinVcpuFlags, vcpu, _cpumap(cpus, total))


def pin_emulator(dom: Domain, cpus: set[int], total: int, *, live: bool) -> None:
    """Pin QEMU's emulator threads to the host CPUs ``cpus``."""
    _live_then_config(dom, "pinning the emulator of", live, dom.handle.pinEmulator, _cpumap(cpus, total))


def vcpu_affinity(dom: Domain) -> list[set[int]]:
    """Per vCPU, the host CPUs it may run on (the running domain's view)."""
    maps = _call(dom, "reading the vCPU pinning of", dom.handle.vcpuPinInfo, LIVE if dom.is_active() else CONFIG)
    return [{i for i, on in enumerate(m) if on} for m in maps]


def set_memory_limit(dom: Domain, kib: int | None, *, live: bool) -> None:
    """Set the memory hard limit (None: no limit)."""
    value = MEMORY_UNLIMITED_KIB if kib is None else kib
    _live_then_config(dom, "setting the memory limit of", live, dom.handle.setMemoryParameters,
                      {"hard_limit": value})


def memory_parameters(dom: Domain) -> dict[str, int]:
    """libvirt's view of the memory tunables (KiB)."""
    got = _call(dom, "reading the memory limits of", dom.handle.memoryParameters, LIVE if dom.is_active() else CONFIG)
    return {str(k): int(v) for k, v in got.items()}


def set_io_weight(dom: Domain, weight: int, *, live: bool) -> None:
    """Set the blkio weight."""
    _live_then_config(dom, "setting the I/O weight of", live, dom.handle.setBlkioParameters, {"weight": weight})


def blkio_parameters(dom: Domain) -> dict[str, Any]:
    """libvirt's view of the blkio tunables."""
    got = _call(dom, "reading the I/O weight of", dom.handle.blkioParameters, LIVE if dom.is_active() else CONFIG)
    return dict(got)


def set_block_iotune(dom: Domain, disk: str, params: dict[str, int], *, live: bool) -> None:
    """Set a disk's throttle (bytes/s, IOPS; 0 = no limit)."""
    _live_then_config(dom, f"limiting disk {disk} of", live, dom.handle.setBlockIoTune, disk, params)


def block_iotune(dom: Domain, disk: str) -> dict[str, int]:
    """libvirt's view of a disk's throttle."""
    flags = LIVE if dom.is_active() else CONFIG
    got = _call(dom, f"reading the limits of disk {disk} of", dom.handle.blockIoTune, disk, flags)
    return {str(k): int(v) for k, v in got.items() if isinstance(v, int)}


def set_bandwidth(dom: Domain, mac: str, params: dict[str, int], *, live: bool) -> None:
    """Set a NIC's (found by MAC) inbound/outbound average in KB/s (0 = no limit)."""
    _live_then_config(dom, f"limiting NIC {mac} of", live, dom.handle.setInterfaceParameters, mac, params)


def cpu_time_ns(dom: Domain) -> int:
    """CPU time the whole domain (vCPUs and emulator threads) has used, in nanoseconds."""
    stats = _call(dom, "reading the CPU time of", dom.handle.getCPUStats, True)
    return int(stats[0]["cpu_time"])
