"""Usage counters through libvirt: every VM's in one getAllDomainStats call, and the host's own."""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import libvirt

from kvmhub.errors import KvmhubError
from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.states import state_name

# The groups `top` and the exporter read; asking for no more keeps the call cheap with many VMs.
STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
BALLOON_PERIOD_S = 2

# The records here and in services.monitor.usage are named tuples, not dataclasses: without the dataclasses
# module (and the inspect module it loads) `kvmhub top --once` starts ~6 ms sooner.


class RawDomainStats(NamedTuple):
    """One domain's typed-parameter dict from getAllDomainStats (keys as libvirt names them)."""

    name: str
    uuid: str
    state: str
    values: dict[str, Any]


class Sample(NamedTuple):
    """Every domain's counters, and when (monotonic seconds) they were read."""

    at: float
    domains: list[RawDomainStats]


class NodeSample(NamedTuple):
    """The host's counters: libvirt's getInfo, getCPUStats, getMemoryStats and KSM parameters."""

    at: float
    hostname: str
    cpu_model: str
    memory_mib: int
    cpus: int
    cpu_mhz: int
    cpu_ns: dict[str, int]
    memory_kib: dict[str, int]
    ksm: dict[str, int]


def sample(hv: Hypervisor, *, timeout: float | None = None) -> Sample:
    """One getAllDomainStats call for every domain (running or not) with the monitoring groups."""

    def fetch() -> Sample:
        rows = hv.conn.getAllDomainStats(STATS_GROUPS, 0)
        at = time.monotonic()
        out = [
            RawDomainStats(
                name=str(dom.name()),
                uuid=str(dom.UUIDString()),
                state=state_name(int(values.get("state.state", 0))),
                values=values,
            )
            for dom, values in rows
        ]
        return Sample(at, out)

    return hv.call(fetch, what="reading VM statistics", timeout=timeout, retry=True)


def enable_balloon_stats(hv: Hypervisor, names: list[str], period: int = BALLOON_PERIOD_S) -> list[str]:
    """Ask the balloon driver of these running VMs to report guest memory every `period` s (live only).

    Returns the names it could not set (no balloon device, or the VM went away meanwhile).
    """

    def apply() -> list[str]:
        failed = []
        for name in names:
            try:
                hv.conn.lookupByName(name).setMemoryStatsPeriod(period, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError:
                failed.append(name)
        return failed

    return hv.call(apply, what="enabling balloon statistics", timeout=max(hv.timeout, 5.0 + len(names) * 0.5))


def node_sample(hv: Hypervisor) -> NodeSample:
    """The host's CPU and memory counters in a few bounded calls."""

    def fetch() -> NodeSample:
        conn = hv.conn
        model, mem_mib, cpus, mhz, *_topology = conn.getInfo()
        cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
        at = time.monotonic()
        try:
            mem = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        except libvirt.libvirtError:
            mem = {}  # test:/// has none; callers fall back to getInfo's total
        try:
            ksm = {k: int(v) for k, v in conn.getMemoryParameters(0).items()}
        except libvirt.libvirtError:
            ksm = {}  # drivers without KSM support (test:///, some remote hosts)
        return NodeSample(
            at=at,
            hostname=str(conn.getHostname()),
            cpu_model=str(model),
            memory_mib=int(mem_mib),
            cpus=int(cpus),
            cpu_mhz=int(mhz),
            cpu_ns={k: int(v) for k, v in cpu.items()},
            memory_kib={k: int(v) for k, v in mem.items()},
            ksm=ksm,
        )

    return hv.call(fetch, what="reading host statistics", retry=True)


def connection_alive(hv: Hypervisor) -> bool:
    """True while the connection answers (for long-running readers such as the event stream)."""
    try:
        return bool(hv.call(hv.conn.isAlive, what="checking the libvirt connection", timeout=10.0))
    except KvmhubError:
        return False
