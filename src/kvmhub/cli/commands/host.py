"""`kvmhub host check|setup`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import output, state

if TYPE_CHECKING:
    from kvmhub.models import HostReport

app = typer.Typer(help="Check this host and fix what stops VMs from running well.", no_args_is_help=True)

_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}


def _print_report(report: HostReport) -> None:
    for c in report.checks:
        output.out.print(f"{_MARK[c.status.value]:>14}  [bold]{c.name}[/]: {c.detail}", highlight=False)
        if c.fix:
            output.out.print(f"{'':>6}fix: {c.fix}", markup=False)
    kind = "KVM" if report.accelerator == "kvm" else "TCG emulation (no KVM)"
    output.out.print(f"\nguests will run with: [bold]{kind}[/] (domain type {report.domain_type})")


@app.command()
def check(
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    reprobe: Annotated[bool, typer.Option("--reprobe", help="boot the KVM probe again")] = False,
) -> None:
    """Check virtualization support, a real KVM probe boot, daemons, pools, cgroups, disk; name fixes."""
    from kvmhub.services import host

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
) -> None:
    """Apply the fixes: /dev/kvm group and mode, daemons started, default pools and network."""
    from kvmhub.services import host

    report = host.setup(state.URI, say=output.say, network=not no_network)
    _print_report(report)
    if not report.ok:
        raise typer.Exit(5)
