"""`kvmhub disk add|rm|resize|ls`: a VM's disks, hot-plugged and resized live when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from kvmhub.cli import live as live_view
from kvmhub.cli import output, state, through

app = typer.Typer(help="A VM's disks (hot-plugged when it runs, always persisted).", no_args_is_help=True)


def _route(vm: str, *rest: str) -> str:
    from kvmhub.validate import check_name

    check_name(vm, "VM")
    return through.path("vms", vm, "disks", *rest)


def _when(live: bool) -> str:
    return "live" if live else "the VM is shut off"


@app.command("ls")
def ls(vm: str, json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List a VM's disks: target, bus, source, format, sizes, whether kvmhub owns the volume."""
    from kvmhub.validate import format_size

    if (server := state.remote()) is not None:
        from kvmhub.models.disk import DiskInfo

        found = [DiskInfo.model_validate(d) for d in server.request("GET", _route(vm))]
    else:
        from kvmhub.services.storage import disks

        found = disks.list_disks(state.hv(), vm)
    if json_out:
        output.print_json(found)
        return

    def size(n: int | None) -> str:
        return "-" if n is None else format_size(n)

    output.table(
        ["TARGET", "BUS", "DEVICE", "SOURCE", "FORMAT", "CAPACITY", "ALLOCATED", "FLAGS"],
        [(d.target, d.bus, d.device, d.source, d.format, size(d.capacity), size(d.allocation),
          ",".join(f for f, on in (("ro", d.readonly), ("owned", d.owned), ("encrypted", d.encrypted)) if on))
         for d in found],
    )


@app.command("add")
def add(
    vm: str,
    size: Annotated[str | None, typer.Option(help="make a new volume of this size, e.g. 10G")] = None,
    vol: Annotated[str | None, typer.Option(help="attach an existing volume POOL/VOLUME")] = None,
    url: Annotated[str | None, typer.Option(help="attach a network export: nfs:// iscsi:// nbd:// http(s)://")] = None,
    bus: Annotated[str, typer.Option(help="virtio, scsi or sata (sata only on a shut-off VM)")] = "virtio",
    readonly: Annotated[bool, typer.Option("--readonly", help="the guest cannot write")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 or raw (default: the volume's)")] = None,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="LUKS-encrypt the new volume (key: a secret)")] = False,
    target: Annotated[str | None, typer.Option(help="device name, e.g. vdc (default: the next free one)")] = None,
) -> None:
    """Add a disk: a new volume, an existing one, or a network export."""
    from kvmhub.services.storage import disks

    with live_view.report(f"disk add {vm}") as report:
        if (server := state.remote()) is not None:
            from kvmhub.models.disk import DiskChange

            body = {"size": size, "vol": vol, "url": url, "bus": bus, "readonly": readonly, "format": fmt,
                    "encrypt": encrypt, "target": target}
            change = DiskChange.model_validate(through.operation(
                server, "POST", _route(vm), report, {k: v for k, v in body.items() if v is not None}))
            disk, live = change.disk, change.live
        else:
            disk, live = disks.add(state.hv(), vm, size=size, vol=vol, url=url, bus=bus, readonly=readonly,
                                   fmt=fmt, encrypt=encrypt, target=target, report=report)
    how = "attached live" if live else "added; the VM is shut off, it sees the disk at its next start"
    ro = " read-only" if disk.readonly else ""
    output.say(f"{vm}: {disk.target} ({disk.bus}{ro}, {disks.source_text(disk.source)}) {how}")


@app.command("rm")
def rm(
    vm: str,
    target: Annotated[str, typer.Argument(help="the disk's device name (`kvmhub disk ls`)")],
    keep: Annotated[bool, typer.Option("--keep", help="keep the volume kvmhub made for it")] = False,
) -> None:
    """Remove a disk; the volume kvmhub made for it is deleted unless --keep."""
    with live_view.report(f"disk rm {vm} {target}") as report:
        if (server := state.remote()) is not None:
            from kvmhub.models.disk import DiskChange

            change = DiskChange.model_validate(through.operation(
                server, "DELETE", _route(vm, target) + f"?keep={str(keep).lower()}", report))
            disk, live, deleted = change.disk, change.live, change.deleted
        else:
            from kvmhub.services.storage import disks

            disk, live, deleted = disks.remove(state.hv(), vm, target, keep=keep, report=report)
    how = "detached live" if live else "removed; the VM is shut off"
    gone = f"; volume {', '.join(deleted)} deleted" if deleted else ""
    output.say(f"{vm}: {disk.target} {how}{gone}")


@app.command("resize")
def resize(
    vm: str,
    target: Annotated[str, typer.Argument(help="the disk's device name (`kvmhub disk ls`)")],
    size: Annotated[str, typer.Argument(help="the new size, e.g. 20G (disks only grow)")],
) -> None:
    """Grow a disk: live when the VM runs (the guest sees the new size at once), else its volume."""
    from kvmhub.validate import format_size

    if (server := state.remote()) is not None:
        from kvmhub.models.disk import DiskResize

        done = DiskResize.model_validate(through.operation(
            server, "POST", _route(vm, target, "resize"), live_view.lines(), {"size": size}))
        old, new, live = done.old_bytes, done.new_bytes, done.live
    else:
        from kvmhub.services.storage import disks

        old, new, live = disks.resize(state.hv(), vm, target, size, report=live_view.lines())
    if old == new:
        output.say(f"{vm}: {target} is already {format_size(new)}")
        return
    output.say(f"{vm}: {target} grown from {format_size(old)} to {format_size(new)} ({_when(live)})")
