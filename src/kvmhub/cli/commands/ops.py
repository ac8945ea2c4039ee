"""`kvmhub ops ls|show` (the operations journal) and `kvmhub repair` (finish what interrupted operations left)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.errors import NotFound

app = typer.Typer(help="Operations: what kvmhub did, is doing, and took back.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("ls")
def ls(
    json_out: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
) -> None:
    """Recent operations, newest first (the server's, through it)."""
    if (server := state.remote()) is not None:
        from kvmhub.models import OperationInfo

        ops = [OperationInfo.model_validate(o) for o in through.get(server, "operations", query=f"limit={limit}")]
    else:
        from kvmhub.services import operations

        ops = operations.recent(limit)
    if json_out:
        output.print_json(ops)
        return
    rows = [(o.id, o.kind, o.target, str(o.state), _when(o.started),
             f"{(o.finished or 0) - o.started:.1f} s" if o.finished else "-", o.pid) for o in ops]
    output.table(["ID", "KIND", "TARGET", "STATE", "STARTED", "TOOK", "PID"], rows)


@app.command("show")
def show(op_id: Annotated[str, typer.Argument(help="operation id (a unique prefix will do)")],
         json_out: JsonOpt = False) -> None:
    """One operation with its steps and what each made."""
    if (server := state.remote()) is not None:
        from kvmhub.models import OperationInfo

        if not all(c in "0123456789abcdef" for c in op_id) or not 6 <= len(op_id) <= 32:
            raise NotFound(f"no operation {op_id!r}", hint="list them: {cmd:ops ls}", code="op.not_found")
        found = [OperationInfo.model_validate(through.get(server, "operations", op_id))]
    else:
        from kvmhub.services import operations

        found = operations.find(op_id)
    if len(found) != 1:
        raise NotFound(f"no operation {op_id!r}" if not found else f"{op_id!r} matches {len(found)} operations",
                       hint="list them: {cmd:ops ls}", code="op.not_found")
    op = found[0]
    if json_out:
        output.print_json(op)
        return
    typer.echo(f"{op.id}  {op.kind} {op.target}  {op.state}")
    typer.echo(f"  started {_when(op.started)}, finished {_when(op.finished)}, pid {op.pid}, host {op.uri}")
    if op.command:
        typer.echo(f"  command: {op.command}")
    if op.error:
        typer.echo(f"  error: {op.error.get('message')}")
    for step in op.steps:
        made = ", ".join(f"{k}={v}" for k, v in step.params.items() if v is not None and k != "xml")
        typer.echo(f"  {step.seq:>2}. [{step.state}] {step.description}" + (f"  ({made})" if made else ""))
        if step.error:
            typer.echo(f"      error: {step.error}")


def repair(yes: Annotated[bool, typer.Option("--yes", help="carry it out (default: only show)")] = False,
           json_out: JsonOpt = False) -> None:
    """Show what interrupted operations left behind and what undoing (or finishing) it takes; --yes does it."""
    from kvmhub.services import repair as repair_svc

    outcomes = repair_svc.repair(apply=yes, report=live.lines())
    if json_out:
        output.print_json([{"id": o.op.id, "kind": o.op.kind, "target": o.op.target, "state": str(o.state),
                            "done": o.done, "left": o.left} for o in outcomes])
        return
    if not outcomes:
        typer.echo("nothing to repair")
        return
    for o in outcomes:
        typer.echo(f"{o.op.id}  {o.op.kind} {o.op.target}: {o.state}")
        for d in o.done:
            typer.echo(f"  done: {d}")
        for item in o.left:
            typer.echo(f"  {'left' if yes else 'to do'}: {item}")
    if not yes:
        typer.echo("run `kvmhub repair --yes` to carry this out")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="ops")
    root.command()(repair)
