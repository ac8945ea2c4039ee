"""`kvmhub pool create|ls|show|rm|refresh|start|stop`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.validate import format_size

if TYPE_CHECKING:
    from kvmhub.models import PoolInfo

app = typer.Typer(help="Storage pools: where volumes (VM disks, images) live.", no_args_is_help=True)


@app.command()
def create(
    name: str,
    type_: Annotated[str, typer.Option("--type", help="dir | fs | netfs | logical | iscsi | iscsi-direct | rbd")],
    path: Annotated[str | None, typer.Option(help="target directory (dir, fs, netfs; iscsi: /dev/disk/by-path)")]
    = None,
    device: Annotated[list[str] | None, typer.Option(help="block device (fs; logical: PVs to build the VG on)")]
    = None,
    fs_format: Annotated[str | None, typer.Option("--fs-format", help="fs: ext4, xfs, ... (default auto)")] = None,
    host: Annotated[str | None, typer.Option(help="server (netfs, iscsi, iscsi-direct, rbd)")] = None,
    port: Annotated[int | None, typer.Option(help="server port (iscsi, iscsi-direct, rbd)")] = None,
    export: Annotated[str | None, typer.Option(help="netfs: exported directory on the server")] = None,
    nfs_version: Annotated[str | None, typer.Option("--nfs-version", help="netfs: 3, 4, 4.2...")] = None,
    vg: Annotated[str | None, typer.Option(help="logical: volume group")] = None,
    iqn: Annotated[str | None, typer.Option(help="iscsi, iscsi-direct: the target's IQN")] = None,
    initiator_iqn: Annotated[str | None, typer.Option("--initiator-iqn", help="iscsi-direct: this host's IQN")]
    = None,
    source_name: Annotated[str | None, typer.Option("--source-name", help="rbd: the Ceph pool")] = None,
    auth_user: Annotated[str | None, typer.Option("--auth-user", help="rbd: Ceph user")] = None,
    secret_uuid: Annotated[str | None, typer.Option("--secret-uuid", help="rbd: libvirt secret with its key")]
    = None,
) -> None:
    """Define, build, start and autostart a pool (undone if any step fails)."""
    from pydantic import ValidationError

    from kvmhub.errors import InvalidInput
    from kvmhub.models import PoolSpec
    from kvmhub.services.storage import pools as storage

    try:
        spec = PoolSpec(name=name, type=type_, path=path, devices=device or [],  # type: ignore[arg-type]
                        fs_format=fs_format, host=host, port=port, export=export, nfs_version=nfs_version, vg=vg,
                        iqn=iqn, initiator_iqn=initiator_iqn, source_name=source_name, auth_user=auth_user,
                        secret_uuid=secret_uuid)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"invalid pool option {'.'.join(str(p) for p in first['loc'])}: {first['msg']}",
                           hint="{opt:type} is one of dir, fs, netfs, logical, iscsi, iscsi-direct, rbd") from None
    with live.report(f"pool create {name}") as report:
        if (server := state.remote()) is not None:
            from kvmhub.models import PoolInfo

            info = PoolInfo.model_validate(through.operation(server, "POST", "/pools", report,
                                                             spec.model_dump(mode="json", exclude_none=True)))
        else:
            info = storage.create_pool(state.hv(), spec, report=report)
    output.say(f"pool {info.name}: {info.type}, {info.state}, {format_size(info.available_bytes)} available"
               + (f", at {info.path}" if info.path else "") + (f", from {info.source}" if info.source else ""))


def _row(p: PoolInfo) -> tuple[object, ...]:
    return (p.name, p.type, p.state, "yes" if p.autostart else "no", format_size(p.capacity_bytes),
            format_size(p.allocation_bytes), format_size(p.available_bytes),
            "" if p.volumes is None else p.volumes, p.path or p.source or "")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List pools: type, state, autostart, sizes, path."""
    if (server := state.remote()) is not None:
        from kvmhub.models import PoolInfo

        found = [PoolInfo.model_validate(p) for p in through.get(server, "pools")]
    else:
        from kvmhub.services.storage import pools as storage

        found = storage.list_pools(state.hv())
    if json_out:
        output.print_json(found)
        return
    output.table(["NAME", "TYPE", "STATE", "AUTOSTART", "CAPACITY", "ALLOCATED", "AVAILABLE", "VOLS", "PATH"],
                 [_row(p) for p in found])


@app.command()
def show(name: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show one pool, with its volume count and the VMs using its volumes."""
    info = _pool(name)
    if json_out:
        output.print_json(info)
        return
    output.fields(info, 12)


@app.command()
def rm(
    name: str,
    delete_data: Annotated[bool, typer.Option(
        "--delete-data", help="also delete its volumes, and its directory if kvmhub made it")]
    = False,
) -> None:
    """Remove a pool (refused while any VM has a disk in it); its data stays unless --delete-data."""
    with live.report(f"pool rm {name}") as report:
        if (server := state.remote()) is not None:
            route = through.path("pools", name) + f"?delete_data={str(delete_data).lower()}"
            done = [str(line) for line in through.operation(server, "DELETE", route, report) or []]
        else:
            from kvmhub.services.storage import pools as storage

            done = storage.remove_pool(state.hv(), name, delete_data=delete_data, report=report)
    for line in done:
        output.say(line)


@app.command()
def refresh(name: str) -> None:
    """Rescan a pool's storage for volumes added or removed behind libvirt's back."""
    info = _act(name, "refresh")
    output.say(f"pool {name}: {info.volumes} volumes, {format_size(info.available_bytes)} available")


@app.command()
def start(name: str) -> None:
    """Start (activate) a pool."""
    _act(name, "start")
    output.say(f"pool {name} started")


@app.command()
def stop(name: str) -> None:
    """Stop (deactivate) a pool; refused while a running VM has a disk in it."""
    _act(name, "stop")
    output.say(f"pool {name} stopped")


def _pool(name: str) -> PoolInfo:
    if (server := state.remote()) is not None:
        from kvmhub.models import PoolInfo

        return PoolInfo.model_validate(through.get(server, "pools", name))
    from kvmhub.services.storage import pools as storage

    return storage.show_pool(state.hv(), name)


def _act(name: str, verb: str) -> PoolInfo:
    """Refresh, start or stop a pool, here or through the server; the pool after."""
    if (server := state.remote()) is not None:
        from kvmhub.models import PoolInfo

        return PoolInfo.model_validate(server.request("POST", through.path("pools", name, verb)))
    from kvmhub.services.storage import pools as storage

    hv = state.hv()
    if verb == "refresh":
        return storage.refresh_pool(hv, name)
    if verb == "start":
        return storage.start_pool(hv, name)
    storage.stop_pool(hv, name)
    return storage.show_pool(hv, name)
