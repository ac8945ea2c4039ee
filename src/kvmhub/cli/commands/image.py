"""`kvmhub image build-tiny|import|ls|show|rm`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import output, state
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
    from kvmhub.services import images
    from kvmhub.tools.tiny.build import build_tiny_image

    with output.phases("build-tiny") as phase:
        path = build_tiny_image(cache, force=force, progress=phase)
        hv = state.hv()
        existing = {i.name: i for i in images.list_images(hv)}
        if name in existing and not force:
            phase("already in the image store")
            output.say(f"image {name} is in the store ({existing[name].path})")
            return
        if name in existing:
            phase("replacing the stored image")
            images.remove(hv, name)
        phase("importing into the image store")
        info = images.import_file(hv, path, name, fmt="qcow2")
    output.say(f"image {info.name}: {format_size(info.allocation_bytes)} at {info.path}")


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="a local qcow2 or raw file")],
    name: Annotated[str, typer.Option("--name", help="image name")],
    fmt: Annotated[str | None, typer.Option("--format", help="qcow2 or raw (default: detected)")] = None,
) -> None:
    """Import a local disk image into the store (hostile qcow2 headers are refused)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from kvmhub.services import images

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=output.err) as bar:
        task = bar.add_task("checking", total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total or None)

        info = images.import_file(state.hv(), src, name, fmt=fmt, progress=progress)
    output.say(f"image {info.name}: {info.format}, {format_size(info.virtual_bytes)} virtual")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List images: size on disk, virtual size, VMs using them."""
    from kvmhub.services import images

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
    """Show one image."""
    from kvmhub.services import images

    info = images.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    for key, value in info.model_dump().items():
        output.out.print(f"{key:>16}: {value}", markup=False)


@app.command()
def rm(name: str) -> None:
    """Remove an image (refused while a VM's disk is backed by it)."""
    from kvmhub.services import images

    images.remove(state.hv(), name)
    output.say(f"image {name} removed")
