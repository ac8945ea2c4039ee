"""`kvmhub save|restore` (memory state on disk) and `kvmhub export|import` (a VM as one file)."""

from __future__ import annotations

from typing import Annotated

import typer

from kvmhub.cli import live, output, state

FileOpt = Annotated[str | None, typer.Option("--file", help="save file on the host (default: libvirt's managed save)")]


def save(name: str, file: FileOpt = None) -> None:
    """Stop a running VM with its memory state on disk; `restore` (or `start`) resumes it."""
    from kvmhub.services.vm import saves

    with live.report(f"save {name}") as report:
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
    from kvmhub.services.vm import saves

    with live.report(f"restore {name}") as report:
        after = saves.restore(state.hv(), name, file=file, running=running, paused=paused, report=report)
    output.say(f"VM {name} restored; it is {after}")


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(save)
    app.command()(restore)
