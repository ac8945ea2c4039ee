"""`kvmhub export NAME --to FILE` and `kvmhub import FILE`: a VM as one file, thin over services.export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.reporting import Reporter

UPLOAD_TIMEOUT_S = 3600.0


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def export(
    name: Annotated[str, typer.Argument(help="the VM to export (shut off)")],
    to: Annotated[Path | None, typer.Option(
        "--to", help="the archive to write (a .tar.gz file where kvmhub runs; through a server: left out, the "
        "server writes it on its host and says where)")] = None,
    compress: Annotated[bool, typer.Option("--compress", help="qcow2 disks with compressed clusters "
                                           "(they stay compressed once imported)")] = False,
) -> None:
    """Write a shut-off VM into one compressed file: its definition, its disks and kvmhub's metadata.

    Each qcow2 disk is flattened: its backing chain (the image a linked clone came from included) is merged
    into one self-contained file, so the archive imports on a host that lacks the image. Only the current
    state travels, not snapshots or saved memory. The file is written as FILE.partial and renamed when
    complete, so an interrupted export never leaves a file under FILE. Through a server, the archive is written
    in the server's exports directory on its host.
    """
    from kvmhub.errors import InvalidInput
    from kvmhub.models import ExportResult

    server = state.remote()
    if server is not None and to is not None:
        raise InvalidInput("through the server, {opt:to} cannot be honoured: the server writes the archive in its "
                           "exports directory on its own host", hint="leave {opt:to} out, or run the command with "
                           "{opt:local} on the VM's host")
    if server is None and to is None:
        raise InvalidInput("{opt:to} is needed: the archive to write", hint=f"{{cmd:export {name} --to FILE}}")
    with live.report(f"export {name}") as report:
        if server is not None:
            from kvmhub.validate import check_name

            check_name(name, "VM")
            result = ExportResult.model_validate(through.operation(
                server, "POST", through.path("vms", name, "export"), report, {"compress": compress}))
            where, after = f"on the server's host to {result.file}", ""
        else:
            from kvmhub.services.vm import export as svc

            assert to is not None
            result = svc.export(state.hv(), name, to, compress=compress, report=report)
            where, after = f"to {result.file}", f"; `kvmhub import {result.file}` brings it back"
    disks = ", ".join(f"{d.target} {_mib(d.bytes)}" for d in result.manifest.disks)
    output.say(f"VM {name} exported {where}: {_mib(result.bytes)} compressed ({disks}) in {result.duration_s:.1f} s"
               + after)


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

    with live.report(f"import {file.name}") as report:
        if (server := state.remote()) is not None:
            vm = _remote_import(server, file, as_name, pool, network, report)
        else:
            from kvmhub.services.vm import export as svc

            req = ImportRequest(media=HostMedia(path=str(file)), as_name=as_name, pool=pool, network=network)
            vm = svc.import_vm(state.hv(), req, report=report)
    output.say(f"VM {vm} imported from {file}; start it: `kvmhub start {vm}`")


def _remote_import(server: Transport, file: Path, as_name: str | None, pool: str | None, network: str | None,
                   report: Reporter) -> str:
    """Upload the archive into a volume of the import's pool, import from that volume, then remove it."""
    import secrets

    from kvmhub.errors import InvalidInput, NotFound
    from kvmhub.models import HostMedia, ImportRequest

    if not file.is_file():
        raise NotFound(f"no export file {file}")
    try:
        src = file.open("rb")
        length = os.fstat(src.fileno()).st_size
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    upload_pool = pool or "default"
    volume = f"kvmhub-import-{secrets.token_hex(4)}.tar.gz"
    with src:
        report.phase(f"uploading {file.name} to the server ({_mib(length)})")
        server.upload(through.path("pools", upload_pool, "volumes", volume, "data") + "?format=raw", src, length,
                      timeout=UPLOAD_TIMEOUT_S)
    try:
        req = ImportRequest(media=HostMedia(volume=f"{upload_pool}/{volume}"), as_name=as_name, pool=pool,
                            network=network)
        return str(through.operation(server, "POST", "/vms/import", report,
                                     req.model_dump(mode="json", exclude_none=True))["name"])
    finally:
        server.request("DELETE", through.path("pools", upload_pool, "volumes", volume))


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(export)
    app.command("import")(import_)
