"""Prometheus metrics: per-VM and host series, one getAllDomainStats call per scrape.

Metric names are stable (documented in README.md, "Metrics"); counters end in ``_total``. Every VM series
carries the label ``vm``; disk series add ``disk`` (target, e.g. vda), network series ``interface``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kvmhub.errors import InvalidInput, KvmhubError
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import stats as hv_stats
from kvmhub.hv.stats import NodeSample, Sample
from kvmhub.services.host import stats as host_stats

DEFAULT_LISTEN = "127.0.0.1:9177"

# (metric, per-device key in getAllDomainStats, help)
_BLOCK = (
    ("kvmhub_vm_disk_read_bytes", "rd.bytes", "Bytes read from the disk"),
    ("kvmhub_vm_disk_write_bytes", "wr.bytes", "Bytes written to the disk"),
    ("kvmhub_vm_disk_read_requests", "rd.reqs", "Read requests to the disk"),
    ("kvmhub_vm_disk_write_requests", "wr.reqs", "Write requests to the disk"),
)
_NET = (
    ("kvmhub_vm_network_receive_bytes", "rx.bytes", "Bytes received on the interface"),
    ("kvmhub_vm_network_transmit_bytes", "tx.bytes", "Bytes sent on the interface"),
    ("kvmhub_vm_network_receive_packets", "rx.pkts", "Packets received on the interface"),
    ("kvmhub_vm_network_transmit_packets", "tx.pkts", "Packets sent on the interface"),
)
# (metric, balloon key (KiB), help)
_MEMORY = (
    ("kvmhub_vm_memory_bytes", "balloon.current", "Memory the VM has now (balloon)"),
    ("kvmhub_vm_memory_max_bytes", "balloon.maximum", "Memory the VM may grow to"),
    ("kvmhub_vm_memory_rss_bytes", "balloon.rss", "Resident memory of the QEMU process"),
    ("kvmhub_vm_memory_guest_total_bytes", "balloon.available", "Memory the guest OS sees"),
    ("kvmhub_vm_memory_guest_usable_bytes", "balloon.usable", "Memory the guest could use without swapping"),
    ("kvmhub_vm_memory_guest_unused_bytes", "balloon.unused", "Memory the guest leaves unused"),
)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def vm_metrics(sample: Sample) -> list[Metric]:
    """Every per-VM family from one getAllDomainStats sample."""
    info = _gauge("kvmhub_vm_info", "Always 1; labels name the VM, its UUID and state", ["vm", "uuid", "state"])
    up = _gauge("kvmhub_vm_running", "1 when the VM is running or paused, else 0", ["vm"])
    vcpus = _gauge("kvmhub_vm_vcpus", "vCPUs the VM has now", ["vm"])
    cpu = _counter("kvmhub_vm_cpu_seconds", "CPU time the VM used", ["vm"])
    memory = {key: _gauge(name, doc, ["vm"]) for name, key, doc in _MEMORY}
    block = {key: _counter(name, doc, ["vm", "disk"]) for name, key, doc in _BLOCK}
    net = {key: _counter(name, doc, ["vm", "interface"]) for name, key, doc in _NET}
    for d in sample.domains:
        v: dict[str, Any] = d.values
        info.add_metric([d.name, d.uuid, d.state], 1)
        up.add_metric([d.name], 1 if d.state in ("running", "paused", "shutting down") else 0)
        if "vcpu.current" in v:
            vcpus.add_metric([d.name], int(v["vcpu.current"]))
        if "cpu.time" in v:
            cpu.add_metric([d.name], int(v["cpu.time"]) / 1e9)
        for key, family in memory.items():
            if key in v:
                family.add_metric([d.name], int(v[key]) * 1024)
        for group, families in (("block", block), ("net", net)):
            for i in range(int(v.get(f"{group}.count", 0))):
                device = str(v.get(f"{group}.{i}.name", i))
                for key, counter in families.items():
                    if f"{group}.{i}.{key}" in v:
                        counter.add_metric([d.name, device], int(v[f"{group}.{i}.{key}"]))
    return [info, up, vcpus, cpu, *memory.values(), *block.values(), *net.values()]


def host_metrics(node: NodeSample, sample: Sample, local_root: str | None) -> list[Metric]:
    """The host families: CPUs, CPU time, memory, VM counts, overcommit, KSM, huge pages, temperatures."""
    stats = host_stats.build("", node, sample, None, local_root)
    cpus = _gauge("kvmhub_host_cpus", "Logical CPUs of the host")
    cpus.add_metric([], node.cpus)
    cpu_time = _counter("kvmhub_host_cpu_seconds", "Host CPU time by mode", ["mode"])
    for mode, ns in sorted(node.cpu_ns.items()):
        cpu_time.add_metric([mode], ns / 1e9)
    mem_total = _gauge("kvmhub_host_memory_total_bytes", "Host memory")
    mem_total.add_metric([], stats.memory_total_mib * 1024**2)
    mem_free = _gauge("kvmhub_host_memory_free_bytes", "Host memory unused")
    mem_free.add_metric([], stats.memory_free_mib * 1024**2)
    mem_avail = _gauge("kvmhub_host_memory_available_bytes", "Host memory free, buffers and page cache")
    mem_avail.add_metric([], stats.memory_available_mib * 1024**2)
    vms = _gauge("kvmhub_host_vms", "VMs on the host (running or not)")
    vms.add_metric([], stats.vms_defined)
    vms_running = _gauge("kvmhub_host_vms_running", "VMs running (or paused) on the host")
    vms_running.add_metric([], stats.vms_running)
    vm_mem = _gauge("kvmhub_host_vm_memory_bytes", "Memory of the host's running VMs")
    vm_mem.add_metric([], stats.vm_memory_running_mib * 1024**2)
    overcommit = _gauge("kvmhub_host_memory_overcommit_ratio", "Memory of running VMs / host memory")
    overcommit.add_metric([], stats.overcommit)
    cpu_over = _gauge("kvmhub_host_cpu_overcommit_ratio", "vCPUs of running VMs / host CPUs")
    cpu_over.add_metric([], stats.cpu_overcommit)
    out: list[Metric] = [cpus, cpu_time, mem_total, mem_free, mem_avail, vms, vms_running, vm_mem, overcommit, cpu_over]
    k = stats.ksm
    if k.available:
        if k.state is not None:
            running = _gauge("kvmhub_host_ksm_running", "1 when KSM merges pages")
            running.add_metric([], 1 if k.state == "on" else 0)
            out.append(running)
        for name, value, doc in (
            ("kvmhub_host_ksm_pages_shared", k.pages_shared, "KSM pages in use (shared)"),
            ("kvmhub_host_ksm_pages_sharing", k.pages_sharing, "Pages mapped to KSM pages (saved)"),
        ):
            if value is not None:
                family = _gauge(name, doc)
                family.add_metric([], value)
                out.append(family)
    if stats.hugepages:
        total = _gauge("kvmhub_host_hugepages", "Huge pages configured", ["size_kib"])
        free = _gauge("kvmhub_host_hugepages_free", "Huge pages free", ["size_kib"])
        for hp in stats.hugepages:
            total.add_metric([str(hp.size_kib)], hp.total)
            free.add_metric([str(hp.size_kib)], hp.free)
        out += [total, free]
    if stats.temperatures:
        temp = _gauge("kvmhub_host_temperature_celsius", "hwmon temperature sensors", ["chip", "sensor"])
        for t in stats.temperatures:
            temp.add_metric([t.chip, t.sensor], t.celsius)
        out.append(temp)
    return out


class KvmhubCollector(Collector):
    """Collects on every scrape: one getAllDomainStats and the host's counters."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self._lock = threading.Lock()  # concurrent scrapes take turns rather than doubling libvirt's load
        self._local = host_root() if host_files_here(hv.uri) else None

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        failed = 0
        families: list[Metric] = []
        with self._lock:
            try:
                sample = hv_stats.sample(self.hv, timeout=10.0)
                node = hv_stats.node_sample(self.hv)
                families = vm_metrics(sample) + host_metrics(node, sample, self._local)
            except KvmhubError:
                failed = 1
        yield from families
        error = _gauge("kvmhub_scrape_error", "1 when the last scrape could not read libvirt")
        error.add_metric([], failed)
        yield error
        took = _gauge("kvmhub_scrape_duration_seconds", "Time this scrape spent reading libvirt")
        took.add_metric([], time.perf_counter() - start)
        yield took


def registry(hv: Hypervisor) -> CollectorRegistry:
    """A registry holding only kvmhub's collector (no process/platform metrics of the exporter)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(KvmhubCollector(hv))
    return reg


def parse_listen(listen: str) -> tuple[str, int]:
    """'ADDR:PORT' or 'PORT' (on 127.0.0.1) -> (address, port); IPv6 as '[::1]:9177'.

    ':PORT' is refused: serving every address must be asked for by name (0.0.0.0 or [::]).
    """
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", listen
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"cannot listen on {listen!r}", hint=f"give ADDR:PORT, e.g. {DEFAULT_LISTEN}")
    host = host.strip("[]")
    if not host:
        raise InvalidInput(
            f"--listen {listen!r} names no address",
            cause="':PORT' would serve the metrics on every address of this host, to anyone who can reach it",
            hint=f"write 0.0.0.0:{port} (or [::]:{port}) to serve every address, or 127.0.0.1:{port} for "
            "this host only",
        )
    return host, int(port)


def serve(hv: Hypervisor, listen: str = DEFAULT_LISTEN) -> tuple[Any, threading.Thread]:
    """Start the HTTP exporter on `listen` in a daemon thread; returns (server, thread). Stop: server.shutdown()."""

    host, port = parse_listen(listen)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry(hv))
    except OSError as exc:
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick a free port: {opt:listen} 127.0.0.1:PORT"
        ) from None
    return server, thread
