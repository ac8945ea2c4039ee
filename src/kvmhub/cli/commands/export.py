"""`kvmhub export NAME --to FILE` and `kvmhub import FILE`: a VM as one file, thin over services.export."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import output, state

Say = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


@contextmanager
def _transfer(title: str) -> Iterator[tuple[Say, Progress]]:
    """Phases as lines and one Rich progress bar (bytes, speed) per transfer; plain lines when not a terminal."""
    start = time.monotonic()
    if not output.err.is_terminal:
        shown: dict[str, int] = {}

        def say_plain(msg: str) -> None:
            output.err.print(f"{title}: {msg} ({time.monotonic() - start:.1f} s)", markup=False)

        def bytes_plain(what: str, done: int, total: int) -> None:
            pct = 100 * done // total if total else 0
            if pct >= shown.get(what, -10) + 10:
                shown[what] = pct
                say_plain(f"{what}: {pct}% ({_mib(done)} of {_mib(total)})")

        yield say_plain, bytes_plain
        return
    from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TimeElapsedColumn, TransferSpeedColumn
    from rich.progress import Progress as Bars

    tasks: dict[str, TaskID] = {}
    with Bars(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
              TimeElapsedColumn(), console=output.err, transient=False) as bars:

        def say_live(msg: str) -> None:
            style = "yellow" if msg.startswith(("warning:", "undo:")) else "dim"
            bars.console.print(f"{title}: {msg} ({time.monotonic() - start:.1f} s)", markup=False, style=style)

        def bytes_live(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total)
            bars.update(tasks[what], completed=done, total=max(total, done))

        yield say_live, bytes_live


def export(
    name: Annotated[str, typer.Argument(help="the VM to export (shut off)")],
    to: Annotated[Path, typer.Option("--to", help="the archive to write (a .tar.gz file where kvmhub runs)")],
    compress: Annotated[bool, typer.Option("--compress", help="qcow2 disks with compressed clusters "
                                           "(they stay compressed once imported)")] = False,
) -> None:
    """Write a shut-off VM into one compressed file: its definition, its disks and kvmhub's metadata.

    Each qcow2 disk is flattened: its backing chain (the image a linked clone came from included) is merged
    into one self-contained file, so the archive imports on a host that lacks the image. Only the current
    state travels, not snapshots or saved memory. The file is written as FILE.partial and renamed when
    complete, so an interrupted export never leaves a file under FILE.
    """
    from kvmhub.services.vm import export as svc

    with _transfer(f"export {name}") as (say, progress):
        result = svc.export(state.hv(), name, to, compress=compress, say=say, progress=progress)
    disks = ", ".join(f"{d.target} {_mib(d.bytes)}" for d in result.manifest.disks)
    output.say(f"VM {name} exported to {result.file}: {_mib(result.bytes)} compressed ({disks}) "
               f"in {result.duration_s:.1f} s; `kvmhub import {result.file}` brings it back")


def import_(
    file: Annotated[Path, typer.Argument(help="an archive made by `kvmhub export`")],
    as_name: Annotated[str | None, typer.Option("--as", help="import as a copy: this name, new UUID and MACs")]
    = None,
    pool: Annotated[str | None, typer.Option("--pool", help="storage pool for its disks (default: default)")]
    = None,
    network: Annotated[str | None, typer.Option("--network", help="connect its NICs to this network instead")]
    = None,
) -> None:
    """Define a VM from an export archive (on this host or another); its disks are uploaded into a pool.

    The VM keeps its name, UUID and MAC addresses unless --as gives it a new name (then it also gets a new
    UUID and new MACs). A name, UUID, MAC or volume that already exists is refused. Unsafe archives (links,
    paths out of the archive, disks pointing at other files, bad checksums) are refused. On any failure what
    was made is removed. The VM is left shut off: `kvmhub start NAME`.
    """
    from kvmhub.models import HostMedia, ImportRequest
    from kvmhub.services.vm import export as svc

    req = ImportRequest(media=HostMedia(path=str(file)), as_name=as_name, pool=pool, network=network)
    with _transfer(f"import {file.name}") as (say, progress):
        vm = svc.import_vm(state.hv(), req, say=say, progress=progress)
    output.say(f"VM {vm} imported from {file}; start it: `kvmhub start {vm}`")


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(export)
    app.command("import")(import_)
