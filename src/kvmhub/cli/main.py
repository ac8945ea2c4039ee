"""The `kvmhub` command: a thin layer over the service modules."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from kvmhub.cli import state
from kvmhub.cli.commands import accounts as accounts_cmd
from kvmhub.cli.commands import backup as backup_cmd
from kvmhub.cli.commands import clone as clone_cmd
from kvmhub.cli.commands import customize as customize_cmd
from kvmhub.cli.commands import device as device_cmd
from kvmhub.cli.commands import disk as disk_cmd
from kvmhub.cli.commands import export as export_cmd
from kvmhub.cli.commands import guest as guest_cmd
from kvmhub.cli.commands import host, image, monitor, net, nic, saves, tune, vm
from kvmhub.cli.commands import ops as ops_cmd
from kvmhub.cli.commands import os as os_cmd
from kvmhub.cli.commands import pool as pool_cmd
from kvmhub.cli.commands import project as project_cmd
from kvmhub.cli.commands import remote as remote_cmd
from kvmhub.cli.commands import serve as serve_cmd
from kvmhub.cli.commands import share as share_cmd
from kvmhub.cli.commands import snapshot as snapshot_cmd
from kvmhub.cli.commands import ssh as ssh_cmd
from kvmhub.cli.commands import template as template_cmd
from kvmhub.cli.commands import vol as vol_cmd
from kvmhub.errors import KvmhubError, exit_code

app = typer.Typer(
    help="kvmhub: create, run and manage KVM/QEMU virtual machines through libvirt.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(host.app, name="host")
app.add_typer(image.app, name="image")
app.add_typer(net.app, name="net")
app.add_typer(nic.app, name="nic")
app.add_typer(os_cmd.app, name="os")
app.add_typer(disk_cmd.app, name="disk")
app.add_typer(snapshot_cmd.app, name="snapshot")
app.add_typer(backup_cmd.app, name="backup")
app.add_typer(pool_cmd.app, name="pool")
app.add_typer(vol_cmd.app, name="vol")
app.add_typer(project_cmd.app, name="project")
app.add_typer(share_cmd.app, name="share")
app.add_typer(device_cmd.app, name="device")
host.app.command("devices")(device_cmd.host_devices)
app.add_typer(template_cmd.app, name="template")
vm.register(app)
tune.register(app)
monitor.register(app)
saves.register(app)
export_cmd.register(app)
clone_cmd.register(app)
ops_cmd.register(app)
serve_cmd.register(app)
remote_cmd.register(app)
accounts_cmd.register(app)
guest_cmd.register(app)
ssh_cmd.register(app)
customize_cmd.register(image.app, disk_cmd.app)


@app.callback()
def main_options(
    connect: Annotated[
        str | None,
        typer.Option("--connect", "-c", help="libvirt URI (default: $KVMHUB_URI or qemu:///system)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds any single libvirt call may take")] = 30.0,
    remote: Annotated[str | None, typer.Option(
        "--remote", help="a kvmhub server: a name from `kvmhub remote ls`, or unix:/PATH or https://HOST:PORT "
        "(default: $KVMHUB_REMOTE, else the local server when it runs)")] = None,
    local: Annotated[bool, typer.Option("--local", help="run here through libvirt, not through a server")] = False,
) -> None:
    state.URI = connect
    state.TIMEOUT = timeout
    state.REMOTE = remote
    state.LOCAL = local
    state.reset()
    if local or (remote is None and not os.environ.get("KVMHUB_REMOTE")):
        _recover_interrupted()  # a server recovers its own; through one, this process journals nothing


def _recover_interrupted() -> None:
    """Undo (or finish) operations whose kvmhub process died, before this command does anything."""
    from kvmhub.cli import live, output
    from kvmhub.services import orphans

    try:
        if not orphans.interrupted():
            return
        from kvmhub.services import repair  # loads the action handlers: only when there is work

        for outcome in repair.recover_orphans(report=live.lines()):
            op = outcome.op
            output.say(f"recovered interrupted operation {op.id} ({op.kind} {op.target}, pid {op.pid}): "
                       f"{outcome.state}" + ("; see `kvmhub repair`" if outcome.left else ""))
    except KvmhubError as exc:
        output.say(f"warning: could not check for interrupted operations: {exc.message}")


def _signals_interrupt() -> None:
    """SIGTERM and SIGHUP stop a command the way Ctrl-C does: what it made is undone."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)


# the main options that take a value (the command's name is the first other word)
_VALUED = frozenset(("--connect", "-c", "--timeout", "--remote"))


def _command_word(args: list[str]) -> str | None:
    """The command (or group) named on the command line; None for none, or when help for all is asked."""
    expect_value = False
    for arg in args:
        if expect_value:
            expect_value = False
        elif arg in _VALUED:
            expect_value = True
        elif arg in ("--help", "--") or not arg.startswith("-"):
            return None if arg in ("--help", "--") else arg
    return None


@contextmanager
def only_named(args: list[str]) -> Iterator[None]:
    """While in the block, the app holds only the command or group `args` name, when it names one: typer builds
    (and inspects the signature of) every registered command on each run, which costs more than most commands."""
    word = _command_word(args)
    groups = [g for g in app.registered_groups if g.name == word]
    commands = [c for c in app.registered_commands
                if (c.name or typer.main.get_command_name(c.callback.__name__ if c.callback else "")) == word]
    if not (groups or commands):  # none, or an unknown word: keep them all (typer suggests the near ones)
        yield
        return
    all_groups, all_commands = app.registered_groups, app.registered_commands
    app.registered_groups, app.registered_commands = groups, commands
    try:
        yield
    finally:
        app.registered_groups, app.registered_commands = all_groups, all_commands


def main() -> None:
    """Console-script entry: run the app, mapping kvmhub errors to messages and exit codes.

    Typer itself turns usage errors into exit code 2 and handles --help.
    """
    from kvmhub.cli import output

    _signals_interrupt()
    sys.argv[1:] = vm.wait_spelling(sys.argv[1:])
    code: int | str | None = 0
    try:
        try:
            with only_named(sys.argv[1:]):
                app()
        except KvmhubError as exc:
            output.error(exc)
            code = exit_code(exc)
        except KeyboardInterrupt:
            output.say("interrupted")
            code = 130
    except SystemExit as done:
        code = done.code
    leave(code)


def leave(code: int | str | None) -> NoReturn:
    """End the process with ``code`` (as ``sys.exit`` takes it) once the output is out, without the
    interpreter's clean-up: freeing every loaded module's objects takes longer than many commands (~0.1 s).
    Everything a command makes is finished and recorded before it returns."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage tool writes its results at the interpreter's exit
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`kvmhub ls | head -1`), or a closed stream
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
