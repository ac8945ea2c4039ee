"""Failure injection for tests: `KVMHUB_INJECT_FAULT=define` makes the step `define` fail,
`KVMHUB_INJECT_FAULT=hang:define` makes it stall there (to test Ctrl-C).

Off unless the variable is set; used to prove every multi-step operation undoes what it made.
"""

from __future__ import annotations

import os
import time

from kvmhub.errors import OperationFailed

HANG_SECONDS = 120.0


class InjectedFault(OperationFailed):
    """Raised at a fault point named in $KVMHUB_INJECT_FAULT."""


def point(name: str) -> None:
    """Fail here if this point is named in $KVMHUB_INJECT_FAULT (comma-separated)."""
    wanted = os.environ.get("KVMHUB_INJECT_FAULT", "").split(",")
    if f"hang:{name}" in wanted:
        print(f"fault point {name}: hanging", flush=True)
        time.sleep(HANG_SECONDS)
    if name in wanted:
        raise InjectedFault(f"injected failure after step {name!r}", cause="KVMHUB_INJECT_FAULT is set")
