"""`kvmhub set`: change a VM's resources and limits, live where QEMU can, always persisted.

The limit options are shared with `kvmhub create` (see :data:`LimitOptions`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.models import Limits

CpuWeight = Annotated[int | None, typer.Option("--cpu-weight", help="CPU weight (cgroup shares), 2-262144")]
CpuCap = Annotated[float | None, typer.Option(
    "--cpu-cap", help="CPU cap in % of one host CPU for the whole VM (up to 100 x vCPUs); 0 = none")]
Pin = Annotated[list[str] | None, typer.Option("--pin", help="pin a vCPU: VCPU:CPUSET, e.g. 0:1 (repeatable)")]
EmulatorPin = Annotated[str | None, typer.Option("--emulator-pin", help="pin QEMU's own threads: CPUSET")]
MemoryLimit = Annotated[str | None, typer.Option(
    "--memory-limit", help="hard limit on the VM's host memory, e.g. 1G; none = no limit")]
DiskIops = Annotated[list[str] | None, typer.Option(
    "--disk-iops", help="[DISK:]N or [DISK:]read=N,write=N I/O operations/s; 0 = none (repeatable)")]
DiskBps = Annotated[list[str] | None, typer.Option(
    "--disk-bps", help="[DISK:]SIZE or [DISK:]read=SIZE,write=SIZE bytes/s, e.g. vda:10M (repeatable)")]
IoWeight = Annotated[int | None, typer.Option("--io-weight", help="block I/O weight, 100-1000")]
NetBw = Annotated[list[str] | None, typer.Option(
    "--net-bw", help="[NIC:]IN/OUT bytes/s per NIC (MAC or index), e.g. 10M/5M; 0 = none (repeatable)")]


def set_(
    name: str,
    cpus: Annotated[int | None, typer.Option(help="vCPUs (hot-plugged up to the maximum)")] = None,
    max_cpus: Annotated[int | None, typer.Option("--max-cpus", help="vCPU hotplug maximum (after restart)")] = None,
    memory: Annotated[str | None, typer.Option(help="memory: balloon, or DIMM hotplug up to --max-memory")] = None,
    cpu_weight: CpuWeight = None,
    cpu_cap: CpuCap = None,
    pin: Pin = None,
    emulator_pin: EmulatorPin = None,
    memory_limit: MemoryLimit = None,
    disk_iops: DiskIops = None,
    disk_bps: DiskBps = None,
    io_weight: IoWeight = None,
    net_bw: NetBw = None,
    autostart: Annotated[bool | None, typer.Option("--autostart/--no-autostart", help="start with the host")] = None,
    firewall: Annotated[str | None, typer.Option(
        help="clean-traffic | allow:22,80/tcp | off (an nwfilter on every NIC)")] = None,
) -> None:
    """Change a VM's resources and limits: applied live when it runs and QEMU can, always persisted."""
    from kvmhub.models import Change, SetRequest

    req = SetRequest(
        cpus=cpus, max_cpus=max_cpus, memory=memory, autostart=autostart, cpu_weight=cpu_weight,
        cpu_cap=cpu_cap, pins=pin or [], emulator_pin=emulator_pin, memory_limit=memory_limit,
        disk_iops=disk_iops or [], disk_bps=disk_bps or [], io_weight=io_weight, net_bw=net_bw or [],
    )
    limits = firewall is None or any(v not in (None, []) for v in req.model_dump().values())
    if firewall is not None:
        from kvmhub.services.network.firewall import check_policy

        check_policy(firewall)  # refuse a bad policy before changing anything
    if (server := state.remote()) is not None:
        from kvmhub.validate import check_name

        check_name(name, "VM")
        if limits:
            for change in server.request("PATCH", through.path("vms", name),
                                         req.model_dump(mode="json", exclude_none=True)):
                output.out.print(f"VM {name}: {Change.model_validate(change).line()}", markup=False)
        if firewall is not None:
            done = server.request("PUT", through.path("vms", name, "firewall"), {"policy": firewall})
            live = Change.model_validate(done).live
    else:
        from kvmhub.services.network import firewall as vm_firewall
        from kvmhub.services.vm import tuning

        hv = state.hv()
        if limits:
            for change in tuning.set_limits(hv, name, req):
                output.out.print(f"VM {name}: {change.line()}", markup=False)
        if firewall is not None:
            live = vm_firewall.set_policy(hv, name, firewall)
    if firewall is not None:
        when = "applied live" if live else "takes effect after restart"
        output.out.print(f"VM {name}: firewall {firewall} ({when})", markup=False)


def limit_lines(limits: Limits) -> list[str]:
    """`show`'s text lines for a VM's limits."""
    lines = [
        f"vCPUs {limits.vcpus} (max {limits.max_vcpus})",
        f"memory {limits.memory_mib} MiB (max {limits.max_memory_mib} MiB)",
        f"CPU weight {limits.cpu_weight if limits.cpu_weight is not None else 'default'}",
        f"CPU cap {f'{limits.cpu_cap_percent:g} %' if limits.cpu_cap_percent else 'none'}",
    ]
    lines += [f"vCPU {p.vcpu} pinned to {p.cpuset}" for p in limits.vcpu_pins]
    if limits.emulator_pin:
        lines.append(f"emulator pinned to {limits.emulator_pin}")
    lines.append(f"memory limit {f'{limits.memory_limit_mib} MiB' if limits.memory_limit_mib else 'none'}")
    lines.append(f"I/O weight {limits.io_weight if limits.io_weight is not None else 'default'}")
    for disk, io in limits.disk_io.items():
        parts = [f"{k.replace('_sec', '/s')}={v}" for k, v in io.model_dump().items() if v]
        lines.append(f"disk {disk} " + (", ".join(parts) or "no limit"))
    for mac, bw in limits.net_bandwidth.items():
        lines.append(f"NIC {mac} in {bw.inbound_kbs or 'none'} / out {bw.outbound_kbs or 'none'} KB/s")
    return lines


def register(app: typer.Typer) -> None:
    app.command("set")(set_)
