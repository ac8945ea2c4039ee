"""`kvmhub vol create|ls|show|resize|clone|rm|upload|download`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.validate import format_size, parse_size

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models import VolumeInfo
    from kvmhub.reporting import Reporter

app = typer.Typer(help="Volumes in storage pools (named POOL/NAME).", no_args_is_help=True)


def _said(v: VolumeInfo) -> str:
    extra = f", backed by {v.backing_volume or v.backing}" if v.backing else ""
    return f"volume {v.pool}/{v.name}: {v.format or '?'}, {format_size(v.capacity_bytes)}{extra} at {v.path}"


@app.command()
def create(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    size: Annotated[str | None, typer.Option(help="capacity, e.g. 10G (default with --backing: its size)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 | raw (default qcow2 in file pools)")] = None,
    backing: Annotated[str | None, typer.Option(help="POOL/VOL: a qcow2 overlay backed by that volume")] = None,
    allocate: Annotated[bool, typer.Option("--allocate", help="allocate the whole size now (not sparse)")]
    = False,
    project: Annotated[str | None, typer.Option(help="the volume's project (default: yours if one, else "
                                                     "default)")] = None,
) -> None:
    """Create an empty volume, or a qcow2 overlay of another volume."""
    capacity = parse_size(size, what="--size") if size is not None else None
    if (server := state.remote()) is not None:
        from kvmhub.models import VolumeCreateRequest, VolumeInfo

        pool, name = _split(ref)
        _check_new(pool, name)
        _check_format(fmt)
        req = VolumeCreateRequest(name=name, capacity_bytes=capacity, format=fmt,  # type: ignore[arg-type]
                                  backing=backing, allocate=allocate, project=project)
        info = VolumeInfo.model_validate(server.request("POST", through.path("pools", pool, "volumes"),
                                                        req.model_dump(mode="json", exclude_none=True)))
    else:
        from kvmhub.services.storage import volumes

        info = volumes.create_volume(state.hv(), ref, capacity, fmt=fmt, backing=backing, allocate=allocate,
                                     project=project)
    output.say(_said(info))


def _row(v: VolumeInfo) -> tuple[object, ...]:
    return (v.name, v.format or "", format_size(v.capacity_bytes), format_size(v.allocation_bytes),
            v.backing_volume or v.backing or "", ", ".join(v.used_by))


@app.command("ls")
def ls(pool: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a pool's volumes: format, capacity, allocation, backing volume, VMs using each."""
    if (server := state.remote()) is not None:
        from kvmhub.models import VolumeInfo
        from kvmhub.validate import check_name

        check_name(pool, "pool")
        found = [VolumeInfo.model_validate(v) for v in through.get(server, "pools", pool, "volumes")]
    else:
        from kvmhub.services.storage import volumes

        found = volumes.list_volumes(state.hv(), pool)
    if json_out:
        output.print_json(found)
        return
    columns = ["NAME", "FORMAT", "CAPACITY", "ALLOCATED", "BACKING", "USED BY"]
    rows = [list(_row(v)) for v in found]
    if any(v.project != "default" for v in found):  # projects are in use: say whose each volume is
        columns.insert(1, "PROJECT")
        for row, v in zip(rows, found, strict=True):
            row.insert(1, v.project)
    output.table(columns, rows)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one volume: format, sizes, path, backing, VMs using it, overlays backed by it."""
    if (server := state.remote()) is not None:
        from kvmhub.models import VolumeInfo

        info = VolumeInfo.model_validate(through.get(server, *_route(ref)))
    else:
        from kvmhub.services.storage import volumes

        info = volumes.show_volume(state.hv(), ref)
    if json_out:
        output.print_json(info)
        return
    output.fields(info, 14)


@app.command()
def resize(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    size: Annotated[str, typer.Argument(help="new capacity (10G) or growth (+2G)")],
    shrink: Annotated[bool, typer.Option("--shrink", help="allow making it smaller (cuts off the end)")] = False,
) -> None:
    """Grow a volume (shrinking is refused unless --shrink)."""
    grow_by = size.startswith("+")
    capacity = parse_size(size.removeprefix("+"), what="size")
    if (server := state.remote()) is not None:
        from kvmhub.models import VolumeInfo

        body = {"capacity_bytes": capacity, "grow": grow_by, "shrink": shrink}
        info = VolumeInfo.model_validate(server.request("POST", through.path(*_route(ref), "resize"), body))
    else:
        from kvmhub.services.storage import volumes

        info = volumes.resize_volume(state.hv(), ref, capacity, grow_by=grow_by, shrink=shrink)
    output.say(f"volume {info.pool}/{info.name}: {format_size(info.capacity_bytes)}")


@app.command()
def clone(
    src: Annotated[str, typer.Argument(metavar="POOL/SRC")],
    dst: Annotated[str, typer.Argument(metavar="[POOL2/]DST")],
    linked: Annotated[bool, typer.Option("--linked", help="a qcow2 overlay backed by SRC instead of a copy")]
    = False,
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 | raw (full copies; default SRC's)")] = None,
    project: Annotated[str | None, typer.Option(help="the copy's project (default: yours if one, else "
                                                     "default)")] = None,
) -> None:
    """Copy a volume in full, or make a linked clone (qcow2 overlay) of it."""
    with live.report(f"vol clone {src}") as report:
        report.phase("making an overlay" if linked else "copying")
        if (server := state.remote()) is not None:
            from kvmhub.models import VolumeInfo

            _check_format(fmt)
            body = {"target": dst, "linked": linked, **({"format": fmt} if fmt is not None else {}),
                    **({"project": project} if project is not None else {})}
            info = VolumeInfo.model_validate(
                through.operation(server, "POST", through.path(*_route(src), "clone"), report, body))
        else:
            from kvmhub.services.storage import volumes

            info = volumes.clone_volume(state.hv(), src, dst, linked=linked, fmt=fmt, project=project)
    output.say(_said(info))


@app.command()
def rm(ref: Annotated[str, typer.Argument(metavar="POOL/NAME")]) -> None:
    """Delete a volume (refused while a VM uses it or another volume is backed by it)."""
    if (server := state.remote()) is not None:
        server.request("DELETE", through.path(*_route(ref)))
    else:
        from kvmhub.services.storage import volumes

        volumes.remove_volume(state.hv(), ref)
    output.say(f"volume {ref} removed")


@app.command()
def upload(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    file: Annotated[Path, typer.Argument(help="a local qcow2 or raw file")],
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 | raw (default: read from the header)")]
    = None,
    project: Annotated[str | None, typer.Option(help="the volume's project (default: yours if one, else "
                                                     "default)")] = None,
) -> None:
    """Upload a file into a new volume sized to it (hostile qcow2 headers are refused)."""
    with live.report(f"vol upload {ref}") as report:
        if (server := state.remote()) is not None:
            info = send_file(server, ref, file, fmt, report, project)
        else:
            from kvmhub.services.storage import volumes

            info = volumes.upload(state.hv(), ref, file, fmt=fmt, report=report, project=project)
    output.say(_said(info))


@app.command()
def download(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    file: Annotated[Path, typer.Argument(help="local file (or directory) to write")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace FILE if it exists")] = False,
) -> None:
    """Download a volume's bytes into a local file."""
    with live.report(f"vol download {ref}") as report:
        if (server := state.remote()) is not None:
            info = _receive_file(server, ref, file, overwrite, report)
        else:
            from kvmhub.services.storage import volumes

            info = volumes.download(state.hv(), ref, file, overwrite=overwrite, report=report)
    output.say(f"volume {info.pool}/{info.name} written to {file}")


def _split(ref: str) -> tuple[str, str]:
    from kvmhub.services.storage import volumes

    return volumes.split_ref(ref)


def _check_new(pool: str, name: str) -> None:
    from kvmhub.services.storage import volumes

    volumes.check_volume_name(name, pool)


def _known_format(fmt: str) -> bool:
    from kvmhub.services.storage import volumes

    return fmt in volumes.FORMATS


def _check_format(fmt: str | None) -> None:
    """Refuse a volume format here as library mode does (the server's request would refuse it in its words)."""
    from kvmhub.errors import InvalidInput

    if fmt is not None and not _known_format(fmt):
        raise InvalidInput(f"unknown volume format {fmt!r}", hint="qcow2 or raw")


def _route(ref: str) -> tuple[str, str, str, str]:
    """The server's route parts of volume POOL/NAME (refused here as in library mode when malformed)."""
    pool, name = _split(ref)
    return "pools", pool, "volumes", name


def send_file(server: Transport, ref: str, file: Path, fmt: str | None, report: Reporter,
              project: str | None = None) -> VolumeInfo:
    """Upload a file of this machine into a new volume of the server's host, with a progress bar."""
    from urllib.parse import quote

    from kvmhub.client import streams
    from kvmhub.errors import InvalidInput
    from kvmhub.models import VolumeInfo

    pool, name = _split(ref)
    _check_new(pool, name)
    try:
        regular, length = streams.file_facts(file)
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc
    if not regular:
        raise InvalidInput(f"{file} is not a regular file", cause="an upload streams one file's bytes; "
                           "directories, devices and pipes have no fixed length to size the volume by",
                           hint="give the path of an image file (qcow2 or raw)")
    if fmt is not None and not _known_format(fmt):
        raise InvalidInput(f"{file} is {fmt}; volumes take qcow2 or raw files",
                           hint=f"convert it: `qemu-img convert -f {fmt} -O qcow2 {file} out.qcow2`, "
                           "or {cmd:image import} it")
    with open(file, "rb") as fh:
        query = "&".join(f"{k}={quote(v)}" for k, v in (("format", fmt), ("project", project)) if v is not None)
        route = through.path(*_route(ref), "data") + (f"?{query}" if query else "")
        answer = streams.upload(server, route, fh, length, what=f"uploading {file.name}", report=report)
    return VolumeInfo.model_validate(answer)


def _receive_file(server: Transport, ref: str, file: Path, overwrite: bool, report: Reporter) -> VolumeInfo:
    """Download a volume of the server's host into a file of this machine; a failed or interrupted download
    leaves no file behind."""
    import os
    import tempfile

    from kvmhub.client import streams
    from kvmhub.models import VolumeInfo
    from kvmhub.services.storage import volumes

    info = VolumeInfo.model_validate(through.get(server, *_route(ref)))
    dest = volumes.download_target(file, info.name, overwrite=overwrite)
    parent = dest.parent
    expected = info.allocation_bytes if info.format == "qcow2" else info.capacity_bytes
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            streams.download(server, through.path(*_route(ref), "data"), fh, what=f"downloading {ref}",
                             total=expected, report=report)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return info
