"""The console script: `kvmhub ls` through a server, and `kvmhub top --once`, `kvmhub ls`, `kvmhub exec` and
`kvmhub snapshot revert|rm` of an internal snapshot here, are answered without loading the whole CLI."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command (see :mod:`kvmhub.cli.fast` for the forms answered before the full CLI loads)."""
    from kvmhub.cli import fast

    code = fast.run(sys.argv[1:])
    if code is None:
        from kvmhub.cli import fast_local

        code = fast_local.run(sys.argv[1:])
    if code is None:
        from kvmhub.cli import fast_exec

        code = fast_exec.run(sys.argv[1:])
    if code is None:
        from kvmhub.cli import fast_snapshot

        code = fast_snapshot.run(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.exit(code)
    from kvmhub.cli.main import main as full

    full()
