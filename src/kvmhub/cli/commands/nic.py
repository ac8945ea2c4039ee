"""`kvmhub nic add|rm|ls`: network cards of a VM, hot-plugged when it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live as live_view
from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models import NICSpec

app = typer.Typer(help="A VM's network cards (hot-plugged when it runs, always persisted).", no_args_is_help=True)


def _route(vm: str, *rest: str) -> str:
    from kvmhub.validate import check_name

    check_name(vm, "VM")
    return through.path("vms", vm, "nics", *rest)


def _remote_list(server: Transport, vm: str) -> list[NICSpec]:
    from kvmhub.models import NICSpec

    return [NICSpec.model_validate(n) for n in server.request("GET", _route(vm))]


def _remote_mac(server: Transport, vm: str, nic: str) -> str:
    """The MAC of the NIC a user named by MAC or index, as the server lists them."""
    from kvmhub.services.network.nics import pick

    return pick(_remote_list(server, vm), vm, nic).mac or nic


def _when(live: bool) -> str:
    return "applied live" if live else "takes effect at the next start"


@app.command("ls")
def ls(vm: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a VM's NICs."""
    if (server := state.remote()) is not None:
        found = _remote_list(server, vm)
    else:
        from kvmhub.services.network import nics

        found = nics.list_nics(state.hv(), vm)
    if json_out:
        output.print_json(found)
        return
    output.table(["#", "MAC", "NETWORK", "MODEL", "LINK", "FIREWALL"],
                 [(i, n.mac, n.network or f"bridge {n.bridge}", n.model, n.link or "up", n.filter or "off")
                  for i, n in enumerate(found)])


@app.command("add")
def add(
    vm: str,
    network: Annotated[str, typer.Option(help="the network to plug into")],
    model: Annotated[str, typer.Option(help="virtio, e1000 or rtl8139")] = "virtio",
    ip: Annotated[str | None, typer.Option(help="reserve this address (default: the next free one)")] = None,
) -> None:
    """Add a NIC."""
    if (server := state.remote()) is not None:
        from kvmhub.models.nic import NICChange

        body = {"network": network, "model": model, **({"ip": ip} if ip is not None else {})}
        change = NICChange.model_validate(through.operation(server, "POST", _route(vm), live_view.lines(), body))
        nic, live = change.nic, change.live
    else:
        from kvmhub.services.network import nics

        nic, live = nics.add(state.hv(), vm, network, model=model, ip=ip)
    output.say(f"{vm}: NIC {nic.mac} on {network} added ({_when(live)})")


@app.command("rm")
def rm(vm: str, nic: Annotated[str, typer.Argument(help="MAC address or index (`kvmhub nic ls`)")]) -> None:
    """Remove a NIC and release its address."""
    if (server := state.remote()) is not None:
        from kvmhub.models.nic import NICChange

        route = _route(vm, _remote_mac(server, vm, nic))
        change = NICChange.model_validate(through.operation(server, "DELETE", route, live_view.lines()))
        gone, live = change.nic, change.live
    else:
        from kvmhub.services.network import nics

        gone, live = nics.remove(state.hv(), vm, nic)
    output.say(f"{vm}: NIC {gone.mac} removed ({_when(live)})")


@app.command("set")
def set_(
    vm: str,
    nic: Annotated[str, typer.Argument(help="MAC address or index (`kvmhub nic ls`)")],
    link: Annotated[str, typer.Option(help="up or down: plug or unplug the virtual cable")],
) -> None:
    """Change a NIC's link state (bandwidth: `kvmhub set VM --net-bw`)."""
    from kvmhub.errors import InvalidInput
    if link not in ("up", "down"):
        raise InvalidInput(f"{{opt:link}} {link!r}", hint="up or down")
    if (server := state.remote()) is not None:
        from kvmhub.models.nic import NICChange

        route = _route(vm, _remote_mac(server, vm, nic))
        change = NICChange.model_validate(through.operation(server, "PATCH", route, live_view.lines(),
                                                            {"link": link}))
        changed, live = change.nic, change.live
    else:
        from kvmhub.services.network import nics

        changed, live = nics.set_link(state.hv(), vm, nic, link == "up")
    output.say(f"{vm}: NIC {changed.mac} link {link} ({_when(live)})")
