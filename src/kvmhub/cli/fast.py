"""`kvmhub ls` through a server without loading the whole CLI (Typer, Rich, pydantic: ~0.3 s of imports).

Only the plain forms are answered here: ``[--remote R] ls [--json]`` when the command would go through a server.
Anything else, and any error, is left to the full CLI, which says it with its usual message and exit code (a
listing has no effects, so asking again costs nothing but time).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from kvmhub.errors import KvmhubError


def run(argv: Sequence[str]) -> int | None:
    """The exit code when the command was answered here; None when the full CLI must run it."""
    args = list(argv)
    remote = None
    if len(args) >= 2 and args[0] == "--remote":
        remote, args = args[1], args[2:]
    elif args and args[0].startswith("--remote="):
        remote, args = args[0].split("=", 1)[1], args[1:]
    if args not in (["ls"], ["ls", "--json"]):
        return None
    from kvmhub.cli import state, through
    from kvmhub.services import orphans

    state.REMOTE = remote
    try:
        server = state.remote()
        if server is None:
            return None
        if remote is None and not os.environ.get("KVMHUB_REMOTE") and orphans.interrupted():
            return None  # the full CLI recovers interrupted operations first
        found = through.get(server, "vms")
    except KvmhubError:
        return None
    finally:
        state.reset()
    if args[-1] == "--json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return 0
    from kvmhub.cli.table import table
    from kvmhub.cli.vm_rows import ls_table

    table(*ls_table(found))
    return 0
