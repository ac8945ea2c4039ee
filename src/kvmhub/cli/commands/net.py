"""`kvmhub net create|ls|show|rm`."""

from __future__ import annotations

from typing import Annotated

import typer

from kvmhub.cli import output, state

app = typer.Typer(help="Virtual networks (libvirt networks with DHCP).", no_args_is_help=True)


@app.command()
def create(
    name: str,
    mode: Annotated[str, typer.Option(help="nat (reaches out through the host) or isolated")] = "isolated",
    subnet: Annotated[str | None, typer.Option(help="IPv4 CIDR, e.g. 10.20.0.0/24 (default: a free /24)")] = None,
    domain: Annotated[str | None, typer.Option(help="DNS domain for VM names")] = None,
) -> None:
    """Create and start a network with DHCP."""
    from kvmhub.services import networks

    info = networks.create(state.hv(), name, mode=mode, subnet=subnet, domain=domain)  # type: ignore[arg-type]
    output.say(f"network {info.name}: {info.mode}, {info.subnet}, bridge {info.bridge}")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List networks."""
    from kvmhub.services import networks

    found = networks.list_networks(state.hv())
    if json_out:
        output.print_json(found)
        return
    output.table(
        ["NAME", "STATE", "MODE", "SUBNET", "BRIDGE", "AUTOSTART", "VMS"],
        [(n.name, "active" if n.active else "inactive", n.mode, n.subnet, n.bridge,
          "yes" if n.autostart else "no", ", ".join(n.vms)) for n in found],
    )


@app.command()
def show(name: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one network."""
    from kvmhub.services import networks

    info = networks.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    for key, value in info.model_dump().items():
        output.out.print(f"{key:>10}: {value}", markup=False)


@app.command()
def rm(name: str, force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Remove a network (refused while VMs use it, unless --force)."""
    from kvmhub.services import networks

    networks.remove(state.hv(), name, force=force)
    output.say(f"network {name} removed")
