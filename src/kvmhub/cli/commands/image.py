"""`kvmhub image build-tiny|build-debian|import|ls|show|rm`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.validate import format_size

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models import ImageImportRequest, ImageInfo
    from kvmhub.reporting import Reporter

app = typer.Typer(help="Base images VMs are cloned from.", no_args_is_help=True)

TINY_NAME = "tiny"


@app.command("build-tiny")
def build_tiny(
    name: Annotated[str, typer.Option(help="image name in the store")] = TINY_NAME,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when cached")] = False,
    cache: Annotated[Path, typer.Option(help="where the build is cached")] = Path("/var/cache/kvmhub"),
    kernel: Annotated[str, typer.Option(help="Debian's kernel: cloud (small) or generic (also 9p, vmgenid)")]
    = "cloud",
) -> None:
    """Build the tiny appliance image offline from Debian packages and import it into the store."""
    from kvmhub.services.storage.tiny import build_tiny_image

    with live.report("build-tiny") as report:
        path = build_tiny_image(cache, force=force, progress=report.phase, kernel=kernel)
        _store_built(name, path, force, None, report)


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
    from kvmhub.services.connect import is_url
    from kvmhub.services.storage import images

    url = is_url(src)
    req = ImageImportRequest(name=name, url=src if url else None, media=None if url else HostMedia(path=src),
                             format=images.image_format(fmt), sha256=sha256, sha512=sha512, os=os_variant)
    with live.report(f"import {name}") as report:
        info = _import(req, report)
    origin = f" from {info.original_format}" if info.original_format not in (None, "qcow2") else ""
    output.say(f"image {info.name}: {info.format}{origin}, {format_size(info.virtual_bytes)} virtual, "
               f"{format_size(info.allocation_bytes)} on disk, sha256 {info.sha256}")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List images: size on disk, virtual size, VMs using them."""
    found = _list()
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
    if (server := state.remote()) is not None:
        from kvmhub.models import ImageInfo
        from kvmhub.validate import check_name

        check_name(name, "image")
        info = ImageInfo.model_validate(through.get(server, "images", name))
    else:
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
    _remove(name)
    output.say(f"image {name} removed")


@app.command("build-debian")
def build_debian(
    name: Annotated[str, typer.Option(help="image name in the store")] = "debian12",
    force: Annotated[bool, typer.Option("--force", help="rebuild even when cached")] = False,
    cache: Annotated[Path, typer.Option(help="where the build is cached")] = Path("/var/cache/kvmhub"),
) -> None:
    """Build a Debian 12 cloud-style image (cloud-init, OpenSSH, qemu-guest-agent; default user debian) with
    debootstrap from Debian's package mirror, and import it into the store."""
    from kvmhub.services.storage.distro import OS_VARIANT, build_debian_image

    with live.report("build-debian") as report:
        path = build_debian_image(cache, force=force, progress=report.phase)
        _store_built(name, path, force, OS_VARIANT, report)


def _store_built(name: str, path: Path, force: bool, os_variant: str | None, report: Reporter) -> None:
    """Import a built image as ``name`` (kept when already stored, replaced with ``force``) and say where."""
    from kvmhub.models import HostMedia, ImageImportRequest

    existing = {i.name: i for i in _list()}
    if name in existing and not force:
        report.phase("already in the image store")
        output.say(f"image {name} is in the store ({existing[name].path})")
        return
    if name in existing:
        report.phase("replacing the stored image")
        _remove(name)
    report.phase("importing into the image store")
    req = ImageImportRequest(name=name, media=HostMedia(path=str(path)), format="qcow2", os=os_variant)
    info = _import(req, report)
    output.say(f"image {info.name}: {format_size(info.allocation_bytes)} at {info.path}")


def _list() -> list[ImageInfo]:
    if (server := state.remote()) is not None:
        from kvmhub.models import ImageInfo

        return [ImageInfo.model_validate(i) for i in through.get(server, "images")]
    from kvmhub.services.storage import images

    return images.list_images(state.hv())


def _remove(name: str) -> None:
    if (server := state.remote()) is not None:
        from kvmhub.validate import check_name

        check_name(name, "image")
        server.request("DELETE", through.path("images", name))
        return
    from kvmhub.services.storage import images

    images.remove(state.hv(), name)


def _import(req: ImageImportRequest, report: Reporter) -> ImageInfo:
    """Import here, or through the server: a file of this machine is first sent into a volume of its host."""
    from kvmhub.models import ImageInfo

    if (server := state.remote()) is None:
        from kvmhub.services.storage import images

        return images.import_image(state.hv(), req, report=report)
    if req.media is None or req.media.path is None:
        return ImageInfo.model_validate(through.operation(server, "POST", "/images", report, _body(req)))
    return _import_file(server, req, Path(req.media.path), report)


def _import_file(server: Transport, req: ImageImportRequest, src: Path, report: Reporter) -> ImageInfo:
    import secrets

    from kvmhub.cli.commands.vol import send_file
    from kvmhub.models import HostMedia, ImageInfo
    from kvmhub.services.storage.default_pools import IMAGES_POOL
    from kvmhub.validate import check_name

    check_name(req.name, "image")
    # the suffix keeps what the import reads of the name (.xz, .gz, .iso) on the uploaded volume
    upload = f"upload-{secrets.token_hex(4)}-{src.name}"[:200]
    ref = f"{IMAGES_POOL}/{upload}"
    through.get(server, "pools", IMAGES_POOL)  # a host without the images pool is told so before any byte is sent
    report.phase("sending the file to the server")
    send_file(server, ref, src, None, report)
    try:
        sent = req.model_copy(update={"media": HostMedia(volume=ref)})
        return ImageInfo.model_validate(through.operation(server, "POST", "/images", report, _body(sent)))
    finally:
        server.request("DELETE", through.path("pools", IMAGES_POOL, "volumes", upload))


def _body(req: ImageImportRequest) -> object:
    return req.model_dump(mode="json", exclude_none=True)
