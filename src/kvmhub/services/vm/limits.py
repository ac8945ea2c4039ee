"""The resource limits a domain definition holds, as `show` reports them (`kvmhub set` changes them: tuning)."""

from __future__ import annotations

from kvmhub.models import Bandwidth, CPUTune, IOTune, Limits, VMSpec

PERIOD_US = 100_000


def cap_percent(tune: CPUTune, vcpus: int) -> float | None:
    """The CPU cap a quota gives, in percent of one host CPU; None when there is no quota."""
    if tune.quota is None or tune.quota <= 0:
        return None
    return round(tune.quota * vcpus * 100 / (tune.period or PERIOD_US), 2)


def limits_of(spec: VMSpec) -> Limits:
    """The limits held in a domain definition (the live one for a running VM)."""
    tune = spec.cputune or CPUTune()
    return Limits(
        vcpus=spec.vcpus,
        max_vcpus=spec.max_vcpus or spec.vcpus,
        memory_mib=spec.current_memory_mib or spec.memory_mib,
        max_memory_mib=spec.max_memory_mib or spec.memory_mib,
        cpu_weight=tune.shares,
        cpu_cap_percent=cap_percent(tune, spec.vcpus),
        vcpu_pins=tune.vcpupin,
        emulator_pin=tune.emulatorpin,
        memory_limit_mib=spec.memory_limit_mib,
        io_weight=spec.io_weight,
        disk_io={d.target: d.iotune for d in spec.disks if d.iotune is not None and d.iotune != IOTune()},
        net_bandwidth={n.mac or str(i): n.bandwidth for i, n in enumerate(spec.nics)
                       if n.bandwidth is not None and n.bandwidth != Bandwidth()},
    )
