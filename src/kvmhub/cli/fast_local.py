"""`kvmhub top --once` and `kvmhub ls` in library mode, answered before the full CLI loads.

One sample of every VM is one getAllDomainStats call (~15 ms for 500 VMs), and a listing a few more; the full CLI
adds ~0.3 s of Typer, Rich, pydantic and command set-up around them. The rows here are plain ones
(:mod:`kvmhub.services.monitor.usage`, :mod:`kvmhub.services.vm.listing_rows`). Only these forms are answered
here, with the output the full commands print: ``[--local] [--connect URI] [--timeout S] top --once [--json]
[--interval S] [--sort KEY] [--reverse]`` and ``[--local] [--connect URI] [--timeout S] ls [--json]``, when the
full CLI would run them in library mode and has no interrupted operation to recover first. Anything else (other
options, a server to go through, a value it would refuse) is left to the full CLI, which says it with its usual
message and exit code; errors while sampling or listing are said here as the full CLI says them.
"""

from __future__ import annotations

import os
import sys

from kvmhub.client.local import DEFAULT_SOCKET

TYPE_CHECKING = False  # not typing's: nothing is loaded here that the sample does not use
if TYPE_CHECKING:
    from collections.abc import Sequence

    from kvmhub.services.connect import Hypervisor

# main options: name -> takes a value
MAIN_OPTIONS = {"--local": False, "--connect": True, "-c": True, "--timeout": True}
_TOP = {"--once": False, "--json": False, "--reverse": False, "--interval": True, "--sort": True}
_LS = {"--json": False}


def options(args: list[str], known: dict[str, bool]) -> tuple[dict[str, str], list[str]] | None:
    """The leading options of `args` among `known` (flags as ""), and the words after them; None for any other."""
    found: dict[str, str] = {}
    while args and args[0].startswith("-"):
        name, eq, value = args[0].partition("=")
        if name not in known or name in found or (eq and not known[name]):
            return None
        if known[name] and not eq:
            if len(args) < 2:
                return None
            value, args = args[1], args[2:]
        else:
            args = args[1:]
        found["--connect" if name == "-c" else name] = value
    return found, args


def number(text: str | None, default: float) -> float | None:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def run(argv: Sequence[str]) -> int | None:
    """The exit code when the command was answered here; None when the full CLI must run it."""
    parsed = options(list(argv), MAIN_OPTIONS)
    if parsed is None or parsed[1][:1] not in (["top"], ["ls"]):
        return None
    main, rest = parsed
    command = options(rest[1:], _TOP if rest[0] == "top" else _LS)
    if command is None or command[1] or (rest[0] == "top" and "--once" not in command[0]):
        return None
    opts = command[0]
    timeout, interval = number(main.get("--timeout"), 30.0), number(opts.get("--interval"), 1.0)
    if timeout is None or interval is None or not library_mode(main):
        return None
    from kvmhub.services import orphans

    if orphans.interrupted():
        return None  # the full CLI recovers interrupted operations first
    from kvmhub.errors import KvmhubError
    from kvmhub.services.connect import open_hypervisor

    try:
        hv = open_hypervisor(main.get("--connect"), timeout)
        if rest[0] == "ls":
            return _ls(hv, "--json" in opts)
        return _top(hv, opts, interval)
    except KvmhubError as exc:  # said as the full CLI says it: trying again would reach libvirt twice
        from kvmhub.cli import output
        from kvmhub.errors import exit_code

        output.error(exc)
        return exit_code(exc)
    except KeyboardInterrupt:
        from kvmhub.cli import output

        output.say("interrupted")
        return 130


def _top(hv: Hypervisor, opts: dict[str, str], interval: float) -> int:
    from kvmhub.services.monitor import usage

    sort = opts.get("--sort", "cpu")
    usage.sort_rows([], sort)
    rows = usage.sort_rows(usage.once(hv, interval), sort, reverse="--reverse" in opts)
    if "--json" in opts:
        sys.stdout.write(indented([r.as_dict() for r in rows]) + "\n")
        return 0
    from kvmhub.cli.table import table
    from kvmhub.cli.top_rows import COLUMNS, cells

    table(COLUMNS, [cells(r) for r in rows])
    return 0


def _ls(hv: Hypervisor, json_out: bool) -> int:
    from kvmhub.services.vm import listing_rows

    rows = listing_rows.rows(hv)
    if json_out:
        import json

        sys.stdout.write(json.dumps([listing_rows.as_json(r) for r in rows], indent=2) + "\n")
        return 0
    from kvmhub.cli.table import table
    from kvmhub.cli.vm_rows import ls_table

    table(*ls_table(rows))
    return 0


def indented(rows: list[dict[str, object]]) -> str:
    """``json.dumps(rows, indent=2)`` for rows of plain values, made by the C encoder: the indenting encoder is
    pure Python (~6 ms for 500 rows of `top`)."""
    import json

    if not rows:
        return "[]"
    row = json.JSONEncoder(separators=(",\n    ", ": "))  # a row's fields one per line, as indent=2 nests them
    return "[\n  " + ",\n  ".join("{\n    " + row.encode(r)[1:-1] + "\n  }" if r else "{}" for r in rows) + "\n]"


def library_mode(main: dict[str, str]) -> bool:
    """Whether the full CLI would run here through libvirt (see :func:`kvmhub.cli.state.remote`), without having
    to ask whether a server answers on its socket."""
    if "--local" in main:
        return True
    if os.environ.get("KVMHUB_REMOTE"):
        return False
    return "--connect" in main or bool(os.environ.get("KVMHUB_URI")) or not os.path.exists(DEFAULT_SOCKET)
