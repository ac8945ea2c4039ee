"""`kvmhub net bridge create|rm`: a host bridge over a NIC in one command, rolled back if connectivity breaks."""

from __future__ import annotations

from typing import Annotated

import typer

from kvmhub.cli import live, output, state

DEFAULT_TIMEOUT = 20.0  # kept equal to kvmhub.services.network.bridge.DEFAULT_TIMEOUT; the CLI imports services lazily

app = typer.Typer(
    help="Host bridges: move a NIC's addresses and routes onto a bridge VMs can join (on this machine).",
    no_args_is_help=True,
)

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="seconds the connectivity check may take before rolling back")
]
CheckIpOpt = Annotated[
    str | None, typer.Option("--check-ip", help="address that must answer ping afterwards (default: the gateway)")
]


def _refuse_remote() -> None:
    from kvmhub.errors import InvalidInput
    from kvmhub.services.connect import runs_here

    state.here_only("net bridge")
    here, uri = runs_here(state.URI)
    if not here:
        raise InvalidInput(
            f"`net bridge` changes the network of the machine it runs on, not of {uri}",
            hint="run it on that host, e.g. `ssh HOST kvmhub net bridge create br0 --from eth0`",
        )


def _checked(target: str, seconds: float) -> str:
    return f"{target} answered after {seconds:.1f} s" if target else "no connectivity check (no addresses to lose)"


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="the new bridge, e.g. br0")],
    dev: Annotated[str, typer.Option("--from", help="the NIC whose addresses and routes move onto the bridge")],
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    check_ip: CheckIpOpt = None,
) -> None:
    """Create bridge NAME with --from DEV as its port; DEV's addresses and routes move onto it.

    If the default gateway (or --check-ip) stops answering within --timeout, or on any error or Ctrl-C,
    everything is put back as it was.
    """
    from kvmhub.services.network import bridge

    _refuse_remote()
    with live.report(f"bridge {name}") as report:
        result = bridge.create(name, dev, timeout=timeout, check_ip=check_ip, report=report)
    moved = ", ".join(result.addresses) or "no addresses"
    routes = f" and {len(result.routes)} route(s)" if result.routes else ""
    output.say(f"bridge {name}: {dev} is its port; moved {moved}{routes}; {_checked(result.checked, result.seconds)}")
    for note in result.warnings:
        output.say(f"warning: {note}")
    output.say(f"not persistent across reboots: put {name} in the host's network configuration; "
               f"VMs join it with `kvmhub net create NAME --mode bridge --bridge {name}`")


@app.command()
def rm(
    name: Annotated[str, typer.Argument(help="the bridge to remove")],
    to: Annotated[str | None, typer.Option("--to", help="the device that gets the addresses back "
                                             "(default: the bridge's only port)")] = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    check_ip: CheckIpOpt = None,
) -> None:
    """Remove bridge NAME, giving its addresses and routes back to its port (rolled back if connectivity breaks)."""
    from kvmhub.services.network import bridge

    _refuse_remote()
    with live.report(f"bridge {name}") as report:
        result = bridge.remove(name, to=to, timeout=timeout, check_ip=check_ip, report=report)
    moved = ", ".join(result.addresses) or "no addresses"
    output.say(f"bridge {name} removed; {result.dev} has {moved} again; {_checked(result.checked, result.seconds)}")
