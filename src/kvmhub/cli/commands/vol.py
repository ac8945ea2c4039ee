"""`kvmhub vol create|ls|show|resize|clone|rm|upload|download`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state
from kvmhub.validate import format_size, parse_size

if TYPE_CHECKING:
    from kvmhub.models import VolumeInfo

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
) -> None:
    """Create an empty volume, or a qcow2 overlay of another volume."""
    from kvmhub.services.storage import volumes

    capacity = parse_size(size, what="--size") if size is not None else None
    info = volumes.create_volume(state.hv(), ref, capacity, fmt=fmt, backing=backing, allocate=allocate)
    output.say(_said(info))


def _row(v: VolumeInfo) -> tuple[object, ...]:
    return (v.name, v.format or "", format_size(v.capacity_bytes), format_size(v.allocation_bytes),
            v.backing_volume or v.backing or "", ", ".join(v.used_by))


@app.command("ls")
def ls(pool: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a pool's volumes: format, capacity, allocation, backing volume, VMs using each."""
    from kvmhub.services.storage import volumes

    found = volumes.list_volumes(state.hv(), pool)
    if json_out:
        output.print_json(found)
        return
    output.table(["NAME", "FORMAT", "CAPACITY", "ALLOCATED", "BACKING", "USED BY"], [_row(v) for v in found])


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one volume: format, sizes, path, backing, VMs using it, overlays backed by it."""
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
    from kvmhub.services.storage import volumes

    grow_by = size.startswith("+")
    capacity = parse_size(size.removeprefix("+"), what="size")
    info = volumes.resize_volume(state.hv(), ref, capacity, grow_by=grow_by, shrink=shrink)
    output.say(f"volume {info.pool}/{info.name}: {format_size(info.capacity_bytes)}")


@app.command()
def clone(
    src: Annotated[str, typer.Argument(metavar="POOL/SRC")],
    dst: Annotated[str, typer.Argument(metavar="[POOL2/]DST")],
    linked: Annotated[bool, typer.Option("--linked", help="a qcow2 overlay backed by SRC instead of a copy")]
    = False,
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 | raw (full copies; default SRC's)")] = None,
) -> None:
    """Copy a volume in full, or make a linked clone (qcow2 overlay) of it."""
    from kvmhub.services.storage import volumes

    with live.report(f"vol clone {src}") as report:
        report.phase("making an overlay" if linked else "copying")
        info = volumes.clone_volume(state.hv(), src, dst, linked=linked, fmt=fmt)
    output.say(_said(info))


@app.command()
def rm(ref: Annotated[str, typer.Argument(metavar="POOL/NAME")]) -> None:
    """Delete a volume (refused while a VM uses it or another volume is backed by it)."""
    from kvmhub.services.storage import volumes

    volumes.remove_volume(state.hv(), ref)
    output.say(f"volume {ref} removed")


@app.command()
def upload(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    file: Annotated[Path, typer.Argument(help="a local qcow2 or raw file")],
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 | raw (default: read from the header)")]
    = None,
) -> None:
    """Upload a file into a new volume sized to it (hostile qcow2 headers are refused)."""
    from kvmhub.services.storage import volumes

    with live.report(f"vol upload {ref}") as report:
        info = volumes.upload(state.hv(), ref, file, fmt=fmt, report=report)
    output.say(_said(info))


@app.command()
def download(
    ref: Annotated[str, typer.Argument(metavar="POOL/NAME")],
    file: Annotated[Path, typer.Argument(help="local file (or directory) to write")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace FILE if it exists")] = False,
) -> None:
    """Download a volume's bytes into a local file."""
    from kvmhub.services.storage import volumes

    with live.report(f"vol download {ref}") as report:
        info = volumes.download(state.hv(), ref, file, overwrite=overwrite, report=report)
    output.say(f"volume {info.pool}/{info.name} written to {file}")
