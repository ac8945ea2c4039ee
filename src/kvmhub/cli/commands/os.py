"""`kvmhub os ls|show|detect`: operating systems from libosinfo's database and the devices they get."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import output, state, through
from kvmhub.validate import format_size

if TYPE_CHECKING:
    from kvmhub.models import OSProfile

app = typer.Typer(help="OS variants (libosinfo) and the devices, machine and sizes each gets.",
                  no_args_is_help=True)


def _print_profile(profile: OSProfile) -> None:
    if profile.note:
        output.say(f"note: {profile.note}")

    def size(n: int | None, unit: int = 1) -> str:
        return format_size(n * unit) if n else "-"

    output.table(
        ["FIELD", "VALUE"],
        [
            ("variant", profile.id),
            ("name", profile.name),
            ("family", profile.family),
            ("distro", profile.distro or "-"),
            ("version", profile.version or "-"),
            ("disk bus", profile.disk_bus),
            ("cdrom bus", profile.cdrom_bus),
            ("nic model", profile.nic_model),
            ("machine", profile.machine),
            ("memory", f"{size(profile.min_memory_mib, 1024**2)} minimum, "
                       f"{size(profile.recommended_memory_mib, 1024**2)} recommended"),
            ("disk", f"{size(profile.min_disk_bytes)} minimum, {size(profile.recommended_disk_bytes)} recommended"),
        ],
    )


@app.command("ls")
def ls(
    filter_: Annotated[str | None, typer.Argument(metavar="[FILTER]", help="part of a short id, name, distro")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the OS variants this host's osinfo-db knows (for --os)."""
    if (server := state.remote()) is not None:
        from urllib.parse import quote

        from kvmhub.models import OSInfo

        query = f"filter={quote(filter_, safe='')}" if filter_ else ""
        found = [OSInfo.model_validate(o) for o in through.get(server, "hosts", "local", "os", query=query)]
    else:
        from kvmhub.services.vm import osinfo

        found = osinfo.list_os(filter_)
    if json_out:
        output.print_json(found)
        return
    output.table(
        ["SHORT ID", "NAME", "FAMILY", "VERSION", "EOL"],
        [(o.id, o.name, o.family or "-", o.version or "-", o.eol or "-") for o in found],
    )


@app.command("show")
def show(
    variant: Annotated[str, typer.Argument(help="a short id from `kvmhub os ls`, e.g. debian11")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The devices, machine type and sizes a VM of this OS gets (with the fallback used, if any)."""
    if (server := state.remote()) is not None:
        from kvmhub.models import OSProfile

        profile = OSProfile.model_validate(through.get(server, "hosts", "local", "os", variant))
    else:
        from kvmhub.services.vm import osinfo

        profile = osinfo.resolve(variant)
    if json_out:
        if profile.note:
            output.say(f"note: {profile.note}")
        output.print_json(profile)
        return
    _print_profile(profile)


@app.command("detect")
def detect(
    iso: Annotated[Path, typer.Argument(help="an installer ISO image")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recognise the OS an installer ISO holds (by its volume, system, publisher and application ids)."""
    from kvmhub.errors import NotFound
    from kvmhub.services.vm import osinfo

    profile = osinfo.detect_iso(iso)
    if profile is None:
        raise NotFound(
            f"no OS in osinfo-db ({osinfo.db_version()}) matches {iso}",
            cause="its volume id matches no known installer medium (it may be newer than the db)",
            hint="pass the variant yourself: {opt:os} VARIANT (see {cmd:os ls})",
        )
    if json_out:
        output.print_json(profile)
        return
    _print_profile(profile)
