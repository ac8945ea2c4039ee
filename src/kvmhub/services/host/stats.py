"""`kvmhub host stats`: the host's CPU and memory, what the VMs ask of it, KSM, huge pages, temperatures.

CPU, memory and the VMs come from libvirt (so they work for remote hosts too); KSM state, huge pages and
hwmon temperatures are read from the host's /sys when it is this machine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import stats as hv_stats
from kvmhub.hv.stats import NodeSample, Sample
from kvmhub.models.stats import HostStats, HugePages, Temperature
from kvmhub.services.host import ksm
from kvmhub.services.monitor.top import ACTIVE

CPU_SAMPLE_S = 0.5


def hugepages(root: str = "") -> list[HugePages]:
    """Every huge page size the kernel offers, with its configured and free page counts."""
    base = Path(root + "/sys/kernel/mm/hugepages")
    out = []
    for sub in sorted(base.glob("hugepages-*kB")) if base.is_dir() else []:
        try:
            size = int(sub.name.removeprefix("hugepages-").removesuffix("kB"))
            total = int((sub / "nr_hugepages").read_text())
            free = int((sub / "free_hugepages").read_text())
        except (OSError, ValueError):
            continue
        out.append(HugePages(size_kib=size, total=total, free=free))
    return out


def temperatures(root: str = "") -> list[Temperature]:
    """Every temperature sensor under /sys/class/hwmon (temp*_input, millidegrees Celsius)."""
    base = Path(root + "/sys/class/hwmon")
    out = []
    for chip_dir in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            chip = (chip_dir / "name").read_text().strip()
        except OSError:
            chip = chip_dir.name
        for sensor in sorted(chip_dir.glob("temp*_input")):
            prefix = sensor.name.removesuffix("_input")
            try:
                millideg = int(sensor.read_text().strip())
            except (OSError, ValueError):
                continue  # sensors that fail to read (asleep, unsupported) are left out
            try:
                label = (chip_dir / f"{prefix}_label").read_text().strip()
            except OSError:
                label = prefix
            out.append(Temperature(chip=chip, sensor=label, celsius=round(millideg / 1000.0, 1)))
    return out


def cpu_percent(before: NodeSample, after: NodeSample) -> float | None:
    """Share of all host CPUs busy between two samples (0-100)."""
    busy_keys = ("kernel", "user")
    if not all(k in before.cpu_ns and k in after.cpu_ns for k in (*busy_keys, "idle")):
        return None
    busy = sum(after.cpu_ns[k] - before.cpu_ns[k] for k in busy_keys)
    idle = after.cpu_ns["idle"] - before.cpu_ns["idle"] + after.cpu_ns.get("iowait", 0) - before.cpu_ns.get("iowait", 0)
    if busy + idle <= 0:
        return None
    return round(100.0 * busy / (busy + idle), 1)


def build(uri: str, node: NodeSample, domains: Sample, cpu: float | None, local_root: str | None) -> HostStats:
    """HostStats from libvirt samples; `local_root` is the host's / as seen from here (None = remote)."""
    total_mib = node.memory_kib.get("total", node.memory_mib * 1024) // 1024
    free_mib = node.memory_kib.get("free", 0) // 1024
    available_mib = free_mib + (node.memory_kib.get("buffers", 0) + node.memory_kib.get("cached", 0)) // 1024
    running = [d for d in domains.domains if d.state in ACTIVE]

    def mem_mib(values: dict[str, Any]) -> int:
        return int(values.get("balloon.current") or values.get("balloon.maximum") or 0) // 1024

    vm_running = sum(mem_mib(d.values) for d in running)
    vm_defined = sum(mem_mib(d.values) for d in domains.domains)
    vcpus = sum(int(d.values.get("vcpu.current", 0)) for d in running)
    notes = []
    if local_root is not None:
        ksm_stats = ksm.read_local(local_root)
        pages = hugepages(local_root)
        temps = temperatures(local_root)
        if not temps:
            notes.append("no temperature sensors: /sys/class/hwmon has none on this host (common in VMs)")
    else:
        ksm_stats = ksm.from_libvirt(node.ksm)
        pages, temps = [], []
        notes.append("huge pages and temperatures are only read for a host on this machine")
    return HostStats(
        uri=uri,
        hostname=node.hostname,
        cpu_model=node.cpu_model,
        cpus=node.cpus,
        cpu_mhz=node.cpu_mhz,
        cpu_percent=cpu,
        memory_total_mib=total_mib,
        memory_free_mib=free_mib,
        memory_available_mib=available_mib,
        vms_defined=len(domains.domains),
        vms_running=len(running),
        vcpus_running=vcpus,
        vm_memory_running_mib=vm_running,
        vm_memory_defined_mib=vm_defined,
        overcommit=round(vm_running / total_mib, 3) if total_mib else 0.0,
        overcommit_defined=round(vm_defined / total_mib, 3) if total_mib else 0.0,
        cpu_overcommit=round(vcpus / node.cpus, 3) if node.cpus else 0.0,
        ksm=ksm_stats,
        hugepages=pages,
        temperatures=temps,
        notes=notes,
    )


def host_stats(hv: Hypervisor, *, sample_seconds: float = CPU_SAMPLE_S) -> HostStats:
    """The host view: two CPU samples `sample_seconds` apart, one getAllDomainStats for the VMs."""
    first = hv_stats.node_sample(hv)
    if sample_seconds > 0:
        time.sleep(sample_seconds)
    second = hv_stats.node_sample(hv)
    domains = hv_stats.sample(hv)
    local = host_root() if host_files_here(hv.uri) else None
    return build(hv.uri, second, domains, cpu_percent(first, second), local)
