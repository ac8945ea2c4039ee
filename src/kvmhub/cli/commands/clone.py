"""`kvmhub clone SRC DST [--linked] [--start] [--network NET]`: thin over services.clone."""

from __future__ import annotations

from typing import Annotated

import typer

from kvmhub.cli import live, output, state, through


def clone(
    source: Annotated[str, typer.Argument(help="the VM to clone (shut off)")],
    name: Annotated[str, typer.Argument(help="the new VM's name")],
    linked: Annotated[bool, typer.Option("--linked", help="copy-on-write disks instead of full copies")] = False,
    start: Annotated[bool, typer.Option("--start", help="start the clone")] = False,
    network: Annotated[str | None, typer.Option(help="put every NIC of the clone on this network")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="with --start: wait until booted (and networked)")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait may take")] = 300.0,
    project: Annotated[str | None, typer.Option(help="the clone's project (default: default)")] = None,
) -> None:
    """Clone a shut-off VM with a new identity: name, UUID, MAC addresses, addresses, hostname, instance-id.

    A full clone copies every writable disk into a self-contained volume (encrypted disks cannot be copied).
    --linked makes qcow2 overlays instead, in milliseconds whatever the disk size: the source's disk is
    frozen into a read-only base both VMs share (the source gets a new overlay on it), so neither VM's
    writes reach the other; the base goes when the last VM on it is removed. Read-only media the source
    owns (its installer ISO) and its kernel and initrd are copied, other read-only media stay shared;
    port forwards are not copied. On any failure what was made is removed and the source is as it was.
    """
    from kvmhub.models import CloneRequest, CloneResult

    req = CloneRequest(source=source, name=name, linked=linked, start=start, network=network, project=project)
    with live.report(f"clone {source} → {name}") as report:
        if (server := state.remote()) is not None:
            from kvmhub.cli.commands.vm import _remote_wait
            from kvmhub.validate import check_name

            check_name(source, "VM")
            body = req.model_dump(mode="json", exclude={"source"}, exclude_none=True)
            result = CloneResult.model_validate(
                through.operation(server, "POST", through.path("vms", source, "clone"), report, body))
            if wait and start:
                _remote_wait(server, name, None, timeout, report)
        else:
            from kvmhub.cli.commands.vm import _wait
            from kvmhub.services.vm import clone as svc
            from kvmhub.services.vm import lifecycle as vms

            hv = state.hv()
            result = svc.clone(hv, req, report=report)
            if wait and start:
                _wait(hv, name, vms.default_wait_target(hv, name), timeout, report)
    kind = "linked clone" if result.linked else "full clone"
    where = ", ".join(result.volumes)
    extra = f"; froze {', '.join(result.frozen)}" if result.frozen else ""
    ips = f", address {', '.join(result.ips)}" if result.ips else ""
    output.say(f"VM {name} made as a {kind} of {source} in {result.duration_s:.2f} s ({where}{extra}{ips})"
               + ("" if start else f"; start it: `kvmhub start {name}`"))


def register(app: typer.Typer) -> None:
    """Add the command to the top-level app."""
    app.command()(clone)
