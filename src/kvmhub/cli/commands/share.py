"""`kvmhub share add|ls|rm`: host directories a VM sees through virtiofs (or 9p)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live as live_view
from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.models.share import ShareAddRequest, ShareChange

app = typer.Typer(help="A VM's shared folders: host directories under the roots the host's admin allows.",
                  no_args_is_help=True)


def _route(vm: str, *rest: str) -> str:
    from kvmhub.validate import check_name

    check_name(vm, "VM")
    return through.path("vms", vm, "shares", *rest)


def request(hostdir: str, tag: str | None, *, mode: str = "virtiofs", readonly: bool = False) -> ShareAddRequest:
    """A share request from command-line words, refused alike in library mode and through the server."""
    import re

    from kvmhub.errors import InvalidInput
    from kvmhub.models.share import TAG_PATTERN, ShareAddRequest

    if mode not in ("virtiofs", "9p"):
        raise InvalidInput(f"{{opt:mode}} {mode!r}", hint="virtiofs or 9p")
    if tag is not None and not re.fullmatch(TAG_PATTERN, tag):
        raise InvalidInput(f"{{opt:tag}} {tag!r} cannot be a mount tag",
                           hint="1 to 31 letters, digits, '_', '.' or '-', starting with a letter or digit")
    return ShareAddRequest.model_validate({"source": hostdir, "mode": mode, "readonly": readonly, "tag": tag})


def from_option(value: str) -> ShareAddRequest:
    """``create --share HOSTDIR[:TAG]``: a virtiofs share (the tag after the last ':' when no '/' follows it)."""
    source, sep, tag = value.rpartition(":")
    return request(source, tag) if sep and "/" not in tag else request(value, None)


def _told(vm: str, what: str, change: ShareChange) -> None:
    share = change.share
    if change.live:
        output.say(f"{vm}: share {share.tag} ({share.source}, {share.mode}) {what} (applied live)")
    elif change.restart:
        output.say(f"{vm}: share {share.tag} ({share.source}, {share.mode}) {what} in the definition; it takes "
                   f"effect when the VM is stopped and started again (`kvmhub stop {vm}` then `kvmhub start {vm}`): "
                   f"{change.reason}")
    else:
        output.say(f"{vm}: share {share.tag} ({share.source}, {share.mode}) {what} (takes effect at the next start)")
    if change.mounted:
        output.say(f"{vm}: mounted in the guest at {change.mounted}")
    if change.note:
        output.say(f"{vm}: {change.note}")


@app.command("ls")
def ls(vm: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a VM's shares."""
    from kvmhub.models.share import ShareInfo

    if (server := state.remote()) is not None:
        found = [ShareInfo.model_validate(s) for s in server.request("GET", _route(vm))]
    else:
        from kvmhub.services.vm import shares

        found = shares.list_shares(state.hv(), vm)
    if json_out:
        output.print_json(found)
        return
    output.table(["TAG", "HOST DIRECTORY", "MODE", "ACCESS", "ATTACHED"],
                 [(s.tag, s.source, s.mode, "ro" if s.readonly else "rw", "yes" if s.attached else "no")
                  for s in found])


@app.command("add")
def add(
    vm: str,
    hostdir: Annotated[str, typer.Argument(help="a directory of the VM's host, under an allowed root")],
    tag: Annotated[str | None, typer.Option(help="the mount tag the guest sees (default: from the directory)")]
    = None,
    readonly: Annotated[bool, typer.Option("--readonly", help="the guest may only read (9p)")] = False,
    mode: Annotated[str, typer.Option(help="virtiofs, or 9p where the guest kernel has it")] = "virtiofs",
) -> None:
    """Share a host directory with a VM (mounted at /mnt/TAG when the running guest takes it live)."""
    from kvmhub.models.share import ShareChange

    req = request(hostdir, tag, mode=mode, readonly=readonly)
    if (server := state.remote()) is not None:
        change = ShareChange.model_validate(through.operation(server, "POST", _route(vm), live_view.lines(),
                                                              req.model_dump(exclude_none=True)))
    else:
        from kvmhub.services.vm import shares

        change = shares.add(state.hv(), vm, req, report=live_view.lines())
    _told(vm, "added", change)


@app.command("rm")
def rm(vm: str, tag: Annotated[str, typer.Argument(help="the share's tag (`kvmhub share ls`)")]) -> None:
    """Stop sharing a directory (unmounted and unplugged when the running VM has it)."""
    from kvmhub.models.share import ShareChange

    if (server := state.remote()) is not None:
        change = ShareChange.model_validate(through.operation(server, "DELETE", _route(vm, tag), live_view.lines()))
    else:
        from kvmhub.services.vm import shares

        change = shares.remove(state.hv(), vm, tag, report=live_view.lines())
    _told(vm, "removed", change)
