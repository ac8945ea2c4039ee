"""`kvmhub image build-tiny|import|ls|show|rm`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import live, output, state
from kvmhub.validate import format_size

app = typer.Typer(help="Base images VMs are cloned from.", no_args_is_help=True)

TINY_NAME = "tiny"


@app.command("build-tiny")
def build_tiny(
    name: Annotated[str, typer.Option(help="image name in the store")] = TINY_NAME,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when cached")] = False,
    cache: Annotated[Path, typer.Option(help="where the build is cached")] = Path("/var/cache/kvmhub"),
) -> None:
    """Build the tiny appliance image offline from Debian packages and import it into the store."""
    from kvmhub.services.storage import images
    from kvmhub.tools.tiny.build import build_tiny_image

    with live.report("build-tiny") as report:
        path = build_tiny_image(cache, force=force, progress=report.phase)
        hv = state.hv()
        existing = {i.name: i for i in images.list_images(hv)}
        if name in existing and not force:
            report.phase("already in the image store")
            output.say(f"image {name} is in the store ({existing[name].path})")
            return
        if name in existing:
            report.phase("replacing the stored image")
            images.remove(hv, name)
        report.phase("importing into the image store")
        info = images.import_file(hv, path, name, fmt="qcow2", report=report)
    output.say(f"image {info.name}: {format_size(info.allocation_bytes)} at {info.path}")


@app.command("import")
def import_(
    src: Annotated[str, typer.Argument(help="a local image file or an http(s) URL (.xz/.gz are decompressed)")],
    name: Annotated[str, typer.Option("--name", help="image name")],
    sha256: Annotated[str | None, typer.Option("--sha256", help="expected SHA-256 of SRC as published")] = None,
    sha512: Annotated[str | None, typer.Option("--sha512", help="expected SHA-512 of SRC as published")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="qcow2, raw, vmdk, vdi, vhdx or vpc (default: from the file's header)")] = None,
    os_variant: Annotated[str | None, typer.Option("--os", help="OS variant (libosinfo short id, e.g. debian11)")]
    = None,
) -> None:
    """Import a disk image into the store as qcow2, from a file or an http(s) URL.

    The download is checked against --sha256/--sha512 before anything is stored. Images that point at other
    files (qcow2 backing or data files, VMDK descriptors) or whose header disagrees with their name or
    --format are refused. A failed or interrupted import leaves nothing behind.
    """
    from kvmhub.models import HostMedia
    from kvmhub.models.image import ImageImportRequest
    from kvmhub.services.storage import images
    from kvmhub.tools.download import is_url

    url = is_url(src)
    req = ImageImportRequest(name=name, url=src if url else None, media=None if url else HostMedia(path=src),
                             format=images.image_format(fmt), sha256=sha256, sha512=sha512, os=os_variant)
    with live.report(f"import {name}") as report:
        info = images.import_image(state.hv(), req, report=report)
    origin = f" from {info.original_format}" if info.original_format not in (None, "qcow2") else ""
    output.say(f"image {info.name}: {info.format}{origin}, {format_size(info.virtual_bytes)} virtual, "
               f"{format_size(info.allocation_bytes)} on disk, sha256 {info.sha256}")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List images: size on disk, virtual size, VMs using them."""
    from kvmhub.services.storage import images

    found = images.list_images(state.hv())
    if json_out:
        output.print_json(found)
        return
    output.table(
        ["NAME", "FORMAT", "VIRTUAL", "ON DISK", "USED BY"],
        [(i.name, i.format, format_size(i.virtual_bytes), format_size(i.allocation_bytes),
          ", ".join(i.used_by)) for i in found],
    )


@app.command()
def show(name: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one image: format, sizes, checksum, OS, source and the VMs using it."""
    from kvmhub.services.storage import images

    info = images.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    checksum = "-"
    if info.sha256:
        how = f"verified against the given {info.checksum_verified}" if info.checksum_verified else "computed"
        checksum = f"sha256:{info.sha256} ({how})"
    fmt = info.format
    if info.original_format and info.original_format != info.format:
        fmt += f" (converted from {info.original_format})"
    rows = [
        ("name", info.name),
        ("format", fmt),
        ("virtual size", format_size(info.virtual_bytes)),
        ("on disk", format_size(info.allocation_bytes)),
        ("checksum", checksum),
        ("os", info.os or "-"),
        ("source", info.source or "-"),
        ("imported", info.imported.isoformat() if info.imported else "-"),
        ("volume", f"{info.pool}/{info.volume}"),
        ("path", info.path),
        ("used by", ", ".join(info.used_by) or "-"),
    ]
    for key, value in rows:
        output.out.print(f"{key:>12}: {value}", markup=False)


@app.command()
def rm(name: str) -> None:
    """Remove an image and its record (refused while a VM's disk is backed by it; the VMs are named)."""
    from kvmhub.services.storage import images

    images.remove(state.hv(), name)
    output.say(f"image {name} removed")
