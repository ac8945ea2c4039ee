"""`kvmhub save|restore` (memory state on disk) and `kvmhub export|import` (a VM as one file)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from kvmhub.cli import live, output, state, through

FileOpt = Annotated[str | None, typer.Option("--file", help="save file on the host (default: libvirt's managed save)")]


def _route(name: str, verb: str, **query: str | bool | None) -> str:
    from urllib.parse import urlencode

    from kvmhub.validate import check_name

    check_name(name, "VM")
    given = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items() if v is not None}
    return through.path("vms", name, verb) + (f"?{urlencode(given)}" if given else "")


def save(name: str, file: FileOpt = None) -> None:
    """Stop a running VM with its memory state on disk; `restore` (or `start`) resumes it."""
    with live.report(f"save {name}") as report:
        if (server := state.remote()) is not None:
            through.operation(server, "POST", _route(name, "save", file=file), report)
            where = os.path.normpath(file) if file is not None else "managed save"
        else:
            from kvmhub.services.vm import saves

            where = saves.save(state.hv(), name, file=file, report=report)
    output.say(f"VM {name} saved ({where}); `kvmhub restore {name}"
               + (f" --file {where}`" if file else "` or `kvmhub start` resumes it"))


def restore(
    name: str,
    file: FileOpt = None,
    running: Annotated[bool, typer.Option("--running", help="resume it running whatever it was saved as")] = False,
    paused: Annotated[bool, typer.Option("--paused", help="resume it paused")] = False,
) -> None:
    """Resume a saved VM exactly where it was."""
    with live.report(f"restore {name}") as report:
        if (server := state.remote()) is not None:
            route = _route(name, "restore", file=file, running=running, paused=paused)
            after = through.operation(server, "POST", route, report)["state"]
        else:
            from kvmhub.services.vm import saves

            after = saves.restore(state.hv(), name, file=file, running=running, paused=paused, report=report)
    output.say(f"VM {name} restored; it is {after}")


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(save)
    app.command()(restore)
