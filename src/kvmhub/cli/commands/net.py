"""`kvmhub net create|ls|show|rm|start|stop|autostart` and `kvmhub net lease ls|add|rm`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmhub.cli import output, state, through
from kvmhub.cli.commands.bridge import app as bridge_app

if TYPE_CHECKING:
    from kvmhub.models import PortForward
    from kvmhub.services.network.networks import NetworkInfo

app = typer.Typer(help="Virtual networks (libvirt networks with DHCP).", no_args_is_help=True)


@app.command()
def create(
    name: str,
    mode: Annotated[
        str, typer.Option(help="nat | isolated | routed | open (own bridge + DHCP), bridge (host bridge), "
                          "direct (macvtap on a host NIC)")
    ] = "isolated",
    subnet: Annotated[str | None, typer.Option(help="IPv4 CIDR, e.g. 10.20.0.0/24 (default: a free /24)")] = None,
    subnet6: Annotated[str | None, typer.Option("--subnet6", help="IPv6 CIDR, e.g. fd10:20::/64")] = None,
    dhcp_range: Annotated[str | None, typer.Option(help="A-B, e.g. 10.20.0.100-10.20.0.200")] = None,
    domain: Annotated[str | None, typer.Option(help="DNS domain: VMs answer as NAME and NAME.DOMAIN")] = None,
    bridge: Annotated[str | None, typer.Option(help="host bridge (mode bridge)")] = None,
    dev: Annotated[str | None, typer.Option(help="host NIC (mode direct)")] = None,
    project: Annotated[str | None, typer.Option(help="the network's project (default: yours if one, else "
                                                     "default)")] = None,
) -> None:
    """Create and start a network."""
    if (server := state.remote()) is not None:
        from kvmhub.errors import InvalidInput
        from kvmhub.models import NetworkCreateRequest
        from kvmhub.services.network.networks import MODES
        from kvmhub.validate import check_name

        check_name(name, "network")
        if mode not in MODES:  # as library mode refuses it (the request's own check says it in its words)
            raise InvalidInput(f"unknown network mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
        req = NetworkCreateRequest(name=name, mode=mode, subnet=subnet, subnet6=subnet6,  # type: ignore[arg-type]
                                   dhcp_range=dhcp_range, domain=domain, bridge=bridge, dev=dev, project=project)
        info = _network(server.request("POST", "/networks", req.model_dump(mode="json", exclude_none=True)))
    else:
        from kvmhub.services.network import networks

        info = networks.create(state.hv(), name, mode=mode, subnet=subnet, subnet6=subnet6,  # type: ignore[arg-type]
                               dhcp_range=dhcp_range, domain=domain, bridge=bridge, dev=dev, project=project)
    where = info.subnet or info.bridge or info.dev
    output.say(f"network {info.name}: {info.mode}, {where}" + (f", bridge {info.bridge}" if info.subnet else ""))


@app.command()
def start(name: str) -> None:
    """Start a network."""
    if (server := state.remote()) is not None:
        server.request("POST", through.path("networks", name, "start"))
    else:
        from kvmhub.services.network import networks

        networks.start(state.hv(), name)
    output.say(f"network {name} started")


@app.command()
def stop(name: str) -> None:
    """Stop a network (its VMs lose connectivity until it starts again)."""
    if (server := state.remote()) is not None:
        server.request("POST", through.path("networks", name, "stop"))
    else:
        from kvmhub.services.network import networks

        networks.stop(state.hv(), name)
    output.say(f"network {name} stopped")


@app.command()
def autostart(
    name: str, off: Annotated[bool, typer.Option("--off", help="do not start with the host")] = False
) -> None:
    """Start a network with the host (or not, with --off)."""
    if (server := state.remote()) is not None:
        server.request("POST", through.path("networks", name, "autostart") + f"?enabled={str(not off).lower()}")
    else:
        from kvmhub.services.network import networks

        networks.set_autostart(state.hv(), name, not off)
    output.say(f"network {name}: autostart {'off' if off else 'on'}")


lease_app = typer.Typer(help="DHCP leases and static reservations of a network.", no_args_is_help=True)
app.add_typer(lease_app, name="lease")


@lease_app.command("ls")
def lease_ls(network: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a network's reservations and dynamic leases."""
    if (server := state.remote()) is not None:
        from kvmhub.services.network.leases import LeaseInfo

        found = [LeaseInfo.model_validate(x) for x in through.get(server, "networks", network, "leases")]
    else:
        from kvmhub.services.network import leases

        found = leases.list_leases(state.hv(), network)
    if json_out:
        output.print_json(found)
        return
    output.table(["IP", "MAC", "HOSTNAME", "KIND"], [(x.ip, x.mac, x.hostname, x.kind) for x in found])


@lease_app.command("add")
def lease_add(
    network: str,
    vm: Annotated[str, typer.Option("--vm", help="the VM whose NIC on this network gets the address")],
    ip: Annotated[str, typer.Option("--ip", help="the address to reserve")],
) -> None:
    """Reserve an address for a VM (applied live; the guest takes it at its next DHCP request)."""
    if (server := state.remote()) is not None:
        from kvmhub.services.network.leases import LeaseInfo

        lease = LeaseInfo.model_validate(server.request("POST", through.path("networks", network, "leases"),
                                                        {"vm": vm, "ip": ip}))
    else:
        from kvmhub.services.network import leases

        lease = leases.reserve_for_vm(state.hv(), network, vm, ip)
    output.say(f"{network}: {lease.ip} reserved for {vm} ({lease.mac}); the guest takes it at its next DHCP request")


@lease_app.command("rm")
def lease_rm(
    network: str,
    which: Annotated[str, typer.Argument(metavar="MAC|IP|NAME", help="the reservation: its MAC, IP or host name")],
    force: Annotated[bool, typer.Option("--force", help="remove it even though a VM with that MAC exists")] = False,
) -> None:
    """Remove a static reservation and its DNS entry (e.g. one left behind by a VM removed with virsh)."""
    if (server := state.remote()) is not None:
        route = through.path("networks", network, "leases", which) + f"?force={str(force).lower()}"
        removed = [str(line) for line in server.request("DELETE", route)]
    else:
        from kvmhub.services.network import leases

        removed = leases.remove_reservation(state.hv(), network, which, force=force)
    for line in removed:
        output.say(f"removed {line}")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List networks."""
    if (server := state.remote()) is not None:
        found = [_network(n) for n in through.get(server, "networks")]
    else:
        from kvmhub.services.network import networks

        found = networks.list_networks(state.hv())
    if json_out:
        output.print_json(found)
        return
    columns = ["NAME", "STATE", "MODE", "SUBNET", "BRIDGE", "AUTOSTART", "VMS"]
    rows: list[list[str | None]] = [
        [n.name, "active" if n.active else "inactive", n.mode, n.subnet, n.bridge, "yes" if n.autostart else "no",
         ", ".join(n.vms)] for n in found]
    if any(n.project != "default" for n in found):  # projects are in use: say whose each network is
        columns.insert(1, "PROJECT")
        for row, n in zip(rows, found, strict=True):
            row.insert(1, n.project)
    output.table(columns, rows)


@app.command()
def show(name: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one network."""
    if (server := state.remote()) is not None:
        info = _network(through.get(server, "networks", name))
    else:
        from kvmhub.services.network import networks

        info = networks.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    for key, value in info.model_dump().items():
        output.out.print(f"{key:>10}: {value}", markup=False)


@app.command()
def rm(name: str, force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Remove a network (refused while VMs use it, unless --force)."""
    if (server := state.remote()) is not None:
        server.request("DELETE", through.path("networks", name) + f"?force={str(force).lower()}")
    else:
        from kvmhub.services.network import networks

        networks.remove(state.hv(), name, force=force)
    output.say(f"network {name} removed")


forward_app = typer.Typer(help="Port forwards from the host to VMs.", no_args_is_help=True)
app.add_typer(forward_app, name="forward")


@forward_app.command("add")
def forward_add(
    vm: str,
    spec: Annotated[str, typer.Argument(help="HOSTPORT:GUESTPORT[/tcp|udp], e.g. 8080:80")],
    host_ip: Annotated[str | None, typer.Option(help="only on this host address (default: all)")] = None,
) -> None:
    """Forward a host port to a VM's port (kept with the VM, re-applied when it starts)."""
    if (server := state.remote()) is not None:
        f = _forward(server.request("POST", through.path("vms", vm, "forwards"), _forward_body(spec, host_ip)))
    else:
        from kvmhub.services.network import forwards

        f = forwards.add(state.hv(), vm, spec, host_ip)
    output.say(f"{f.host_ip or '*'}:{f.host_port}/{f.proto} -> {vm}:{f.guest_port} (applied)")


@forward_app.command("ls")
def forward_ls(vm: Annotated[str | None, typer.Argument()] = None,
               json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List port forwards (of one VM, or all)."""
    if (server := state.remote()) is not None:
        names = [vm] if vm is not None else [v["name"] for v in through.get(server, "vms")]
        found = {n: fs for n in names if (fs := [_forward(f) for f in through.get(server, "vms", n, "forwards")])}
    else:
        from kvmhub.services.network import forwards

        found = forwards.list_forwards(state.hv(), vm)
    rows = [{"vm": name, **f.model_dump()} for name, fs in found.items() for f in fs]
    if json_out:
        output.print_json(rows)
        return
    output.table(["VM", "HOST", "GUEST", "PROTO"],
                 [(r["vm"], f"{r['host_ip'] or '*'}:{r['host_port']}", r["guest_port"], r["proto"]) for r in rows])


@forward_app.command("rm")
def forward_rm(vm: str, port: Annotated[str, typer.Argument(help="HOSTPORT[/tcp|udp]")]) -> None:
    """Remove a port forward."""
    if (server := state.remote()) is not None:
        f = _forward(server.request("DELETE", through.path("vms", vm, "forwards", port)))
    else:
        from kvmhub.services.network import forwards

        f = forwards.remove(state.hv(), vm, port)
    output.say(f"forward {f.host_port}/{f.proto} -> {vm}:{f.guest_port} removed")


def _network(data: Any) -> NetworkInfo:
    from kvmhub.services.network.networks import NetworkInfo

    return NetworkInfo.model_validate(data)


def _forward(data: Any) -> PortForward:
    from kvmhub.models import PortForward

    return PortForward.model_validate(data)


def _forward_body(spec: str, host_ip: str | None) -> dict[str, Any]:
    """The server's body for HOSTPORT:GUESTPORT[/PROTO], read as library mode reads it (same refusals)."""
    from kvmhub.services.network import forwards

    f = forwards.parse(spec, host_ip)
    return f.model_dump(mode="json")


app.add_typer(bridge_app, name="bridge")
