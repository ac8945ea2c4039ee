"""`kvmhub exec NAME -- CMD...` in library mode, answered before the full CLI loads.

A command run through the guest agent takes ~35 ms of agent calls; the full CLI adds ~0.15 s of Typer, Rich and
command set-up around them, which made `exec` slower than an ``ssh`` to the same guest. Only this form is answered
here: ``[--local] [--connect URI] [--timeout S] exec [--timeout S] [--env K=V]... [--no-stdin|-n] NAME -- CMD...``
with the request valid, when the full CLI would run it in library mode and has no interrupted operation to recover
first. Anything else is left to the full CLI, which says it with its usual message and exit code; errors while
running are said here as the full CLI says them.
"""

from __future__ import annotations

import sys

from kvmhub.cli.fast_local import MAIN_OPTIONS, library_mode, number, options

TYPE_CHECKING = False  # not typing's: nothing is loaded here that the command does not use
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO

    from kvmhub.models.events import Event

_EXEC = {"--timeout": True, "--env": True, "-e": True, "--no-stdin": False, "-n": False}


def _parse(args: list[str]) -> tuple[dict[str, str], str, list[str], list[str]] | None:
    """exec's options, the VM's name, the --env pairs and the command; None for any other form."""
    found: dict[str, str] = {}
    env: list[str] = []
    name: str | None = None
    while args:
        word, args = args[0], args[1:]
        if word == "--":
            return (found, name, env, args) if name is not None and args else None
        if not word.startswith("-"):
            if name is not None:
                return None
            name = word
            continue
        key, eq, value = word.partition("=")
        if key not in _EXEC or (eq and not _EXEC[key]):
            return None
        if _EXEC[key] and not eq:
            if not args:
                return None
            value, args = args[0], args[1:]
        if key in ("--env", "-e"):
            env.append(value)
        elif key in found or (key in ("-n", "--no-stdin") and "--no-stdin" in found):
            return None
        else:
            found["--no-stdin" if key == "-n" else key] = value
    return None


def run(argv: Sequence[str]) -> int | None:
    """The command's exit code when it was answered here; None when the full CLI must run it."""
    parsed = options(list(argv), MAIN_OPTIONS)
    if parsed is None or parsed[1][:1] != ["exec"]:
        return None
    main, rest = parsed
    command = _parse(rest[1:])
    if command is None:
        return None
    opts, name, env, argv_in_guest = command
    connect_timeout = number(main.get("--timeout"), 30.0)
    if connect_timeout is None or not library_mode(main):
        return None
    run_timeout = number(opts.get("--timeout"), 0.0) if "--timeout" in opts else None
    if "--timeout" in opts and not run_timeout:
        return None
    from kvmhub.services import orphans

    if orphans.interrupted():
        return None  # the full CLI recovers interrupted operations first
    from kvmhub.models.guest_rules import MAX_STDIN, command_problem

    if command_problem(argv_in_guest, env, run_timeout):
        return None  # refused by the full CLI in its words, stdin still unread
    import base64

    from kvmhub.errors import KvmhubError
    from kvmhub.reporting import Reporter
    from kvmhub.services.connect import open_hypervisor
    from kvmhub.services.vm import guest_exec

    stdin = None if "--no-stdin" in opts or sys.stdin.isatty() else sys.stdin.buffer.read(MAX_STDIN + 1)
    try:
        req = guest_exec.PlainCommand(argv_in_guest, env, base64.b64encode(stdin).decode() if stdin else None,
                                      run_timeout)
        hv = open_hypervisor(main.get("--connect"), connect_timeout)
        return guest_exec.run(hv, name, req, out=writer(sys.stdout.buffer), err=writer(sys.stderr.buffer),
                              report=Reporter(_line)).exit_code
    except KvmhubError as exc:
        from kvmhub.cli import output
        from kvmhub.errors import exit_code

        output.error(exc)
        return exit_code(exc)
    except KeyboardInterrupt:
        from kvmhub.cli import output

        output.say("interrupted")
        return 130


def writer(stream: BinaryIO) -> Callable[[bytes], None]:
    """A sink writing a command's output to ``stream`` as it comes."""

    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write


def _line(event: Event) -> None:
    """An event said as the full CLI's exec says it (loading Rich only when there is one)."""
    from kvmhub.cli import live

    live.line(event)
