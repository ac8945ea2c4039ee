"""`kvmhub backup NAME --to DIR [--incremental]`, `backup ls|verify|restore`: thin commands over services.backups."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kvmhub.cli import live, output, state, through


class _BackupGroup(TyperGroup):
    """`backup NAME --to DIR` runs the hidden `take` command; `backup ls|verify|restore ...` the others."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["take", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_BackupGroup, no_args_is_help=True,
                  help="Back up a VM: `kvmhub backup NAME --to DIR [--incremental]` (full, or the changes since "
                       "the last backup there, through libvirt's backup API); list, verify and restore backups.")
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _route(name: str) -> str:
    from kvmhub.validate import check_name

    check_name(name, "VM")
    return through.path("vms", name, "backups")


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


@app.command("take", hidden=True)
def take(
    name: Annotated[str, typer.Argument(help="the VM to back up")],
    to: Annotated[str, typer.Option("--to", help="backup directory on the host")],
    incremental: Annotated[bool, typer.Option("--incremental", help="only what changed since the last backup")]
    = False,
) -> None:
    """Back up a VM (running or not) into a directory: full, or --incremental since the last backup there."""
    from kvmhub.models.backup import BackupInfo, BackupRequest

    with live.report(f"backup {name}") as report:
        req = BackupRequest(vm=name, directory=to, incremental=incremental)
        if (server := state.remote()) is not None:
            info = BackupInfo.model_validate(through.operation(
                server, "POST", _route(name), report, req.model_dump(mode="json", exclude={"vm"})))
        else:
            from kvmhub.services.snapshots import backups

            info = backups.backup(state.hv(), req, report=report)
    output.say(f"{info.kind} backup {info.name} of {name} in {to}: {_mib(info.bytes)} in {info.duration_s:.1f} s")


@app.command("ls")
def ls(
    name: str,
    directory: Annotated[str | None, typer.Option("--dir", help="only the backups in this directory")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List a VM's backup points (from the directories its checkpoints name, or --dir)."""
    if (server := state.remote()) is not None:
        from urllib.parse import urlencode

        from kvmhub.models.backup import BackupInfo

        query = f"?{urlencode({'directory': directory})}" if directory is not None else ""
        found = [BackupInfo.model_validate(b) for b in server.request("GET", _route(name) + query)]
    else:
        from kvmhub.services.snapshots import backups

        found = backups.list_backups(state.hv(), name, directory)
    if json_out:
        output.print_json(found)
        return
    if not found:
        output.say(f"VM {name} has no backups" + (f" in {directory}" if directory else ""))
        return
    output.table(["POINT", "KIND", "PARENT", "CREATED", "SIZE", "CHECKPOINT", "DIRECTORY"],
                 [(i.name, i.kind, i.parent or "", i.created, _mib(i.bytes),
                   "yes" if i.checkpoint_present else "gone", i.directory) for i in found])


@app.command()
def verify(directory: str) -> None:
    """Check a backup directory: each file's checksum and `qemu-img check`."""
    from kvmhub.errors import OperationFailed

    with live.report(f"verify {directory}") as report:
        if (server := state.remote()) is not None:
            problems = list(through.operation(server, "POST", "/backups/verify", report, {"directory": directory}))
        else:
            from kvmhub.services.snapshots import backups

            problems = backups.verify(state.hv(), directory, report=report)
    if problems:
        raise OperationFailed(f"{len(problems)} problem(s) in {directory}:\n  " + "\n  ".join(problems),
                              hint="take a new full backup")
    output.say(f"{directory}: every backup file is intact")


@app.command()
def restore(
    name: str,
    source: Annotated[str, typer.Option("--from", help="backup directory on the host")],
    at: Annotated[str | None, typer.Option("--at", help="backup point (default: the latest)")] = None,
    as_name: Annotated[str | None, typer.Option("--as", help="restore as a new VM with this name")] = None,
    pool: Annotated[str | None, typer.Option("--pool", help="pool for the restored disks")] = None,
) -> None:
    """Rebuild a VM's disks from a full backup and its incrementals (the VM must be shut off)."""
    from kvmhub.models.backup import RestoreRequest

    req = RestoreRequest(vm=name, directory=source, at=at, as_name=as_name, pool=pool)
    with live.report(f"backup restore {name}") as report:
        if (server := state.remote()) is not None:
            body = req.model_dump(mode="json", exclude_none=True)
            vm = str(through.operation(server, "POST", "/backups/restore", report, body)["name"])
        else:
            from kvmhub.services.snapshots import backups

            vm = backups.restore(state.hv(), req, report=report)
    output.say(f"VM {vm} restored from {source}" + (f" at {at}" if at else "") + f"; start it: `kvmhub start {vm}`")
