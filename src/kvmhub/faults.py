"""Failure injection for tests: `KVMHUB_INJECT_FAULT=define` makes the step `define` fail.

Off unless the variable is set; used to prove every multi-step operation undoes what it made.
"""

from __future__ import annotations

import os

from kvmhub.errors import OperationFailed


class InjectedFault(OperationFailed):
    """Raised at a fault point named in $KVMHUB_INJECT_FAULT."""


def point(name: str) -> None:
    """Fail here if this point is named in $KVMHUB_INJECT_FAULT (comma-separated)."""
    wanted = os.environ.get("KVMHUB_INJECT_FAULT", "")
    if wanted and name in wanted.split(","):
        raise InjectedFault(f"injected failure after step {name!r}", cause="KVMHUB_INJECT_FAULT is set")
