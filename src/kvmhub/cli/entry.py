"""The console script: `kvmhub ls` through a server is answered without loading the whole CLI."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command (see :mod:`kvmhub.cli.fast` for the forms answered before the full CLI loads)."""
    from kvmhub.cli import fast

    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.exit(code)
    from kvmhub.cli.main import main as full

    full()
