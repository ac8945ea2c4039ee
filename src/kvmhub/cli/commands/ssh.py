"""`kvmhub ssh NAME [-- CMD...]` and `kvmhub shell NAME`: the system's ssh to a guest, with the key kvmhub put in
its seed and a known_hosts file per VM; `shell` falls back to the serial console."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.models import VMInfo

User = Annotated[str | None, typer.Option("--user", "-u", help="guest user (default: the image's default user)")]
Identity = Annotated[Path | None, typer.Option("--identity", "-i", help="private key (default: kvmhub's own)")]


def _vm(name: str) -> VMInfo:
    """The VM as `show` reports it (phase, addresses, user), locally or through the server."""
    from kvmhub.validate import check_name

    check_name(name, "VM")
    if (server := state.remote()) is not None:
        from kvmhub.models import VMInfo

        return VMInfo.model_validate(through.get(server, "vms", name))
    from kvmhub.services.vm import lifecycle as vms

    return vms.show(state.hv(), name)


def _ssh_argv(name: str, user: str | None, identity: Path | None, remote: list[str]) -> list[str]:
    from kvmhub.services.vm import ssh as guest_ssh

    address = guest_ssh.target(_vm(name), user)
    argv = guest_ssh.command(address, identity, remote)
    guest_ssh.check_sshd(name, address)
    return argv


def ssh(
    name: str,
    command: Annotated[list[str] | None, typer.Argument(
        help="command to run in the guest (after --); as with ssh, the guest's shell runs the words joined")] = None,
    user: User = None,
    identity: Identity = None,
) -> None:
    """Log in to a VM with ssh (its address, the key kvmhub injected), or run a command there."""
    _exec(_ssh_argv(name, user, identity, command or []))


def shell(name: str, user: User = None, identity: Identity = None) -> None:
    """A shell in a VM: ssh when it answers, else its serial console."""
    from kvmhub.errors import KvmhubError

    try:
        argv = _ssh_argv(name, user, identity, [])
    except KvmhubError as exc:
        if exc.code in ("vm.not_found", "input.invalid_name"):
            raise
        output.say(f"no ssh ({exc.message}): attaching to the serial console (Ctrl-] leaves)")
        from kvmhub.cli.commands.vm import console

        console(name)
        return
    _exec(argv)


def _exec(argv: list[str]) -> None:
    """Become ssh: it owns the terminal, its exit status is the command's."""
    import os

    os.execvp(argv[0], argv)  # noqa: S606  # an argv list, no shell


def register(app: typer.Typer) -> None:
    app.command()(ssh)
    app.command()(shell)
