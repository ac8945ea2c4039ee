"""Wire types for monitoring: per-VM usage (`kvmhub top`), the host view (`host stats`), events."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VMStats(BaseModel):
    """One VM's usage. Totals are cumulative counters; rates (per second) come from two samples.

    Rates are None when there was only one sample or the VM is not running. `cpu_percent` is a share of
    one host CPU, as in top(1): a VM with 2 busy vCPUs shows up to 200.
    """

    name: str
    uuid: str
    state: str
    vcpus: int = 0
    cpu_time_s: float | None = None
    cpu_percent: float | None = None
    memory_mib: int | None = None
    memory_max_mib: int | None = None
    memory_used_mib: int | None = None
    memory_available_mib: int | None = None
    memory_rss_mib: int | None = None
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    disk_read_reqs: int | None = None
    disk_write_reqs: int | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    disk_read_iops: float | None = None
    disk_write_iops: float | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None
    net_rx_bps: float | None = None
    net_tx_bps: float | None = None


class KsmStats(BaseModel):
    """Kernel same-page merging: whether it runs and what it saves."""

    available: bool
    reason: str | None = None
    state: str | None = None  # on | off | unmerge
    pages_shared: int | None = None
    pages_sharing: int | None = None
    pages_unshared: int | None = None
    full_scans: int | None = None
    saved_mib: float | None = None


class HugePages(BaseModel):
    """One huge page size: configured pages and free pages."""

    size_kib: int
    total: int
    free: int


class Temperature(BaseModel):
    """One hwmon temperature sensor."""

    chip: str
    sensor: str
    celsius: float


class HostStats(BaseModel):
    """The host's CPU, memory and what the VMs ask of it."""

    uri: str
    hostname: str
    cpu_model: str
    cpus: int
    cpu_mhz: int
    cpu_percent: float | None = None
    memory_total_mib: int
    memory_free_mib: int
    memory_available_mib: int
    vms_defined: int
    vms_running: int
    vcpus_running: int
    vm_memory_running_mib: int
    vm_memory_defined_mib: int
    overcommit: float = Field(description="memory of running VMs / host memory")
    overcommit_defined: float = Field(description="memory of all defined VMs / host memory")
    cpu_overcommit: float = Field(description="vCPUs of running VMs / host CPUs")
    ksm: KsmStats
    hugepages: list[HugePages] = Field(default_factory=list)
    temperatures: list[Temperature] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Event(BaseModel):
    """One libvirt domain event, as `kvmhub events` streams it."""

    time: float = Field(description="seconds since the epoch, when kvmhub received it")
    vm: str
    uuid: str
    kind: str  # lifecycle | reboot | device-added | device-removed | ...
    event: str  # e.g. started, stopped, suspended, resumed; for device events the device alias
    detail: str | None = None
