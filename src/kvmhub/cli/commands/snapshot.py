"""`kvmhub snapshot create|ls|show|revert|rm`: thin commands over services.snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through

if TYPE_CHECKING:
    from kvmhub.models.snapshot import SnapshotInfo

app = typer.Typer(help="Snapshots of a VM: internal (with memory) or external (disk-only).", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


@app.command()
def create(
    name: str,
    snap: Annotated[str | None, typer.Argument(help="snapshot name (default: snap-DATE-TIME)")] = None,
    memory: Annotated[bool, typer.Option("--memory", help="include the running VM's memory (the default)")] = False,
    disk_only: Annotated[bool, typer.Option("--disk-only", help="external snapshot of the disks only")] = False,
    quiesce: Annotated[bool, typer.Option("--quiesce", help="freeze guest file systems (guest agent)")] = False,
    description: Annotated[str | None, typer.Option(help="free text kept with the snapshot")] = None,
) -> None:
    """Take a snapshot of a VM."""
    from kvmhub.models.snapshot import SnapshotInfo, SnapshotRequest

    req = SnapshotRequest(vm=name, name=snap, memory=memory, disk_only=disk_only, quiesce=quiesce,
                          description=description)
    with live.report(f"snapshot {name}") as report:
        if (server := state.remote()) is not None:
            info = SnapshotInfo.model_validate(through.operation(
                server, "POST", _route(name), report, req.model_dump(mode="json", exclude={"vm"})))
        else:
            from kvmhub.services.snapshots import snapshots

            info = snapshots.create(state.hv(), req, report=report)
    what = "with memory" if info.memory else "disks only"
    output.say(f"snapshot {info.name} of {name} created ({info.kind}, {what})")


def _route(name: str, *rest: str) -> str:
    from kvmhub.validate import check_name

    check_name(name, "VM")
    return through.path("vms", name, "snapshots", *rest)


def _tree(found: list[SnapshotInfo]) -> list[tuple[str, ...]]:
    depth: dict[str, int] = {}
    rows: list[tuple[str, ...]] = []
    for info in found:
        depth[info.name] = depth[info.parent] + 1 if info.parent in depth else 0
        label = "  " * depth[info.name] + ("└─ " if depth[info.name] else "") + info.name
        rows.append((label + (" *" if info.current else ""), info.kind, "yes" if info.memory else "",
                     info.state, info.created or "", info.description or ""))
    return rows


@app.command("ls")
def ls(name: str, json_out: JsonOpt = False) -> None:
    """List a VM's snapshots as a tree; * marks the current one."""
    if (server := state.remote()) is not None:
        from kvmhub.models.snapshot import SnapshotInfo

        found = [SnapshotInfo.model_validate(s) for s in server.request("GET", _route(name))]
    else:
        from kvmhub.services.snapshots import snapshots

        found = snapshots.list_snapshots(state.hv(), name)
    if json_out:
        output.print_json(found)
        return
    if not found:
        output.say(f"VM {name} has no snapshots")
        return
    output.table(["NAME", "KIND", "MEMORY", "STATE", "CREATED", "DESCRIPTION"], _tree(found))


@app.command()
def show(name: str, snap: str, json_out: JsonOpt = False) -> None:
    """Show one snapshot."""
    if (server := state.remote()) is not None:
        from kvmhub.models.snapshot import SnapshotInfo

        info = SnapshotInfo.model_validate(server.request("GET", _route(name, snap)))
    else:
        from kvmhub.services.snapshots import snapshots

        info = snapshots.show(state.hv(), name, snap)
    if json_out:
        output.print_json(info)
        return
    for key, value in info.model_dump().items():
        output.out.print(f"{key:>12}: {value}", markup=False)


@app.command()
def revert(
    name: str,
    snap: str,
    running: Annotated[bool, typer.Option("--running", help="leave the VM running after the revert")] = False,
    paused: Annotated[bool, typer.Option("--paused", help="leave the VM paused after the revert")] = False,
) -> None:
    """Bring a VM back to a snapshot (its current state is discarded)."""
    with live.report(f"revert {name}") as report:
        if (server := state.remote()) is not None:
            query = f"?running={str(running).lower()}&paused={str(paused).lower()}"
            after = through.operation(server, "POST", _route(name, snap, "revert") + query, report)["state"]
        else:
            from kvmhub.services.snapshots import snapshots

            after = snapshots.revert(state.hv(), name, snap, running=running, paused=paused, report=report)
    output.say(f"VM {name} reverted to {snap}; it is {after}")


@app.command()
def rm(
    name: str,
    snap: str,
    children: Annotated[bool, typer.Option("--children", help="remove its descendants too")] = False,
    keep_children: Annotated[
        bool, typer.Option("--keep-children", help="remove only it; its children hang from its parent")
    ] = False,
) -> None:
    """Remove a snapshot (external ones are merged into their base with block jobs)."""
    with live.report(f"snapshot rm {name}") as report:
        if (server := state.remote()) is not None:
            query = f"?children={str(children).lower()}&keep_children={str(keep_children).lower()}"
            gone = list(through.operation(server, "DELETE", _route(name, snap) + query, report))
        else:
            from kvmhub.services.snapshots import snapshots

            gone = snapshots.remove(state.hv(), name, snap, children=children, keep_children=keep_children,
                                    report=report)
    output.say(f"removed snapshot{'s' if len(gone) > 1 else ''} {', '.join(gone)} of {name}")
