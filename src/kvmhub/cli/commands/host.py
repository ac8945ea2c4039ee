"""`kvmhub host check|setup|stats`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from kvmhub.cli import live, output, state, through

if TYPE_CHECKING:
    from kvmhub.models import HostReport
    from kvmhub.models.stats import HostStats, KsmStats

app = typer.Typer(help="Check this host and fix what stops VMs from running well.", no_args_is_help=True)

_MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red"), "skip": ("skip", "dim")}


def _print_report(report: HostReport) -> None:
    for c in report.checks:
        word, colour = _MARK[c.status.value]
        output.out.print(Text.assemble(" " * (6 - len(word)), (word, colour), "  ", (c.name, "bold"), f": {c.detail}"))
        if c.fix:
            output.out.print(f"{'':>6}fix: {c.fix}", markup=False)
    kind = "KVM" if report.accelerator == "kvm" else "TCG emulation (no KVM)"
    output.out.print(Text.assemble("\nguests will run with: ", (kind, "bold"), f" (domain type {report.domain_type})"))


@app.command()
def check(
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    reprobe: Annotated[bool, typer.Option("--reprobe", help="boot the KVM probe again")] = False,
) -> None:
    """Check virtualization support, a real KVM probe boot, daemons, pools, cgroups, disk; name fixes."""
    if (server := state.remote()) is not None:
        from kvmhub.models import HostReport

        report = HostReport.model_validate(through.get(server, "hosts", "local",
                                                       query=f"reprobe={str(reprobe).lower()}"))
    else:
        from kvmhub.services.host import checks as host

        report = host.check(state.URI, reprobe=reprobe)
    if json_out:
        output.print_json(report)
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(5)


@app.command()
def setup(
    no_network: Annotated[
        bool, typer.Option("--no-network", help="do not define/start libvirt's default NAT network")
    ] = False,
    ksm: Annotated[
        str | None, typer.Option("--ksm", help="only switch kernel same-page merging on or off", metavar="on|off")
    ] = None,
) -> None:
    """Apply the fixes: /dev/kvm group and mode, daemons started, default pools and network."""
    from kvmhub.services.host import checks as host

    state.here_only("host setup")
    if ksm is not None:
        from kvmhub.services.connect import host_root
        from kvmhub.services.host import ksm as ksm_svc

        output.out.print(f"KSM: {_ksm_line(ksm_svc.set_state(ksm, host_root()))}", markup=False)
        return
    report = host.setup(state.URI, report=live.lines(), network=not no_network)
    _print_report(report)
    if not report.ok:
        raise typer.Exit(5)


def _ksm_line(k: KsmStats) -> str:
    if not k.available:
        return f"not available ({k.reason})"
    state = k.state or "state unknown"
    pages = f"{k.pages_shared or 0} pages shared, {k.pages_sharing or 0} sharing"
    return f"{state}, {pages} ({k.saved_mib or 0:g} MiB saved)"


def _print_stats(s: HostStats) -> None:
    def line(label: str, value: str) -> None:
        output.out.print(f"{label:>14}  {value}", markup=False)

    gib = 1024.0
    line("host", f"{s.hostname} ({s.uri})")
    cpu = "-" if s.cpu_percent is None else f"{s.cpu_percent:g} % busy"
    line("cpu", f"{s.cpus} x {s.cpu_model} @ {s.cpu_mhz} MHz, {cpu}")
    line(
        "memory",
        f"{s.memory_total_mib / gib:.1f} GiB total, {s.memory_free_mib / gib:.1f} GiB free, "
        f"{s.memory_available_mib / gib:.1f} GiB available",
    )
    line("vms", f"{s.vms_running} running of {s.vms_defined}, {s.vcpus_running} vCPUs "
                f"(cpu overcommit {s.cpu_overcommit:g})")  # fmt: skip
    line(
        "overcommit",
        f"{s.overcommit:g} ({s.vm_memory_running_mib} MiB of running VMs / {s.memory_total_mib} MiB); "
        f"all defined VMs: {s.overcommit_defined:g}",
    )
    line("ksm", _ksm_line(s.ksm))
    pages = ", ".join(f"{h.size_kib // 1024} MiB: {h.free}/{h.total} free" for h in s.hugepages)
    line("hugepages", pages or "-")
    temps = ", ".join(f"{t.chip}/{t.sensor} {t.celsius:g} C" for t in s.temperatures)
    line("temperatures", temps or "-")
    for note in s.notes:
        line("note", note)


@app.command()
def stats(
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """CPU, memory, overcommit (VM memory / host memory), KSM, huge pages and temperatures."""
    if (server := state.remote()) is not None:
        from kvmhub.models.stats import HostStats

        result = HostStats.model_validate(through.get(server, "hosts", "local", "stats"))
    else:
        from kvmhub.services.host import stats as host_stats

        result = host_stats.host_stats(state.hv())
    if json_out:
        output.print_json(result)
    else:
        _print_stats(result)
