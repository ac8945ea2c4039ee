"""`kvmhub export NAME --to FILE` and `kvmhub import FILE`: a VM as one file, thin over services.export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import live, output, state


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


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

    with live.report(f"export {name}") as report:
        result = svc.export(state.hv(), name, to, compress=compress, report=report)
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
    with live.report(f"import {file.name}") as report:
        vm = svc.import_vm(state.hv(), req, report=report)
    output.say(f"VM {vm} imported from {file}; start it: `kvmhub start {vm}`")


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(export)
    app.command("import")(import_)
