"""`kvmhub snapshot revert|rm` of an internal snapshot in library mode, answered before the full CLI loads.

libvirt reverts to and deletes an internal snapshot natively in a few calls (:mod:`kvmhub.services.snapshots.
internal`); the full CLI adds ~0.2 s of Typer, Rich, pydantic and command set-up around them. Only these forms are
answered here, with the text the full commands print: ``[--local] [--connect URI] [--timeout S] snapshot revert
VM SNAP [--running | --paused]`` and ``... snapshot rm VM SNAP [--keep-children]``, when the full CLI would run
them in library mode and has no interrupted operation to recover first. An external snapshot, any other form or
option, and a server to go through are left to the full CLI; errors are said here as the full CLI says them.
"""

from __future__ import annotations

import sys
import time

from kvmhub.cli.fast_local import MAIN_OPTIONS, library_mode, number, options

TYPE_CHECKING = False  # not typing's: nothing is loaded here that the command does not use
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

_FLAGS = {"revert": frozenset({"--running", "--paused"}), "rm": frozenset({"--keep-children"})}


def run(argv: Sequence[str]) -> int | None:
    """The exit code when the command was answered here; None when the full CLI must run it."""
    parsed = options(list(argv), MAIN_OPTIONS)
    if parsed is None or parsed[1][:1] != ["snapshot"] or len(parsed[1]) < 2 or parsed[1][1] not in _FLAGS:
        return None
    main, (_, verb, *words) = parsed
    flags = {w for w in words if w.startswith("-")}
    names = [w for w in words if not w.startswith("-")]
    if not flags <= _FLAGS[verb] or len(names) != 2 or len(flags) + 2 != len(words) or len(flags) > 1:
        return None  # two flags are --running with --paused: the full CLI refuses them in its words
    timeout = number(main.get("--timeout"), 30.0)
    if timeout is None or not library_mode(main):
        return None
    from kvmhub.services import orphans

    if orphans.interrupted():
        return None  # the full CLI recovers interrupted operations first
    from kvmhub.errors import KvmhubError
    from kvmhub.services.connect import open_hypervisor
    from kvmhub.services.snapshots import internal

    vm, snap = names
    try:
        found = internal.find(open_hypervisor(main.get("--connect"), timeout), vm, snap)
        if verb == "revert":
            after = internal.revert(found, running="--running" in flags, paused="--paused" in flags,
                                    phase=_phase_line(f"revert {vm}"))
            if after is None:
                return None  # external: kvmhub's own work, with its journal
            _say(f"VM {vm} reverted to {snap}; it is {after}")
            return 0
        gone = internal.remove(vm, snap, found, keep_children="--keep-children" in flags)
        if gone is None:
            return None
        _say(f"removed snapshot{'s' if len(gone) > 1 else ''} {', '.join(gone)} of {vm}")
        return 0
    except KvmhubError as exc:  # said as the full CLI says it: trying again would reach libvirt twice
        from kvmhub.cli import output
        from kvmhub.errors import exit_code

        output.error(exc)
        return exit_code(exc)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _say(line: str) -> None:
    """A line on stderr, as the full CLI's ``output.say`` prints it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _phase_line(title: str) -> Callable[[str], None]:
    """A phase said as the full CLI says it: a line with the time since the command began (dim on a terminal,
    where the full CLI also shows a live line that it clears at the end)."""
    start = time.monotonic()

    def say(phase: str) -> None:
        text = f"{title}: {phase} ({time.monotonic() - start:.1f} s)"
        _say(f"\033[2m  {text}\033[0m" if sys.stderr.isatty() else text)

    return say
