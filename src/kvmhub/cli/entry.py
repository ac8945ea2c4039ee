"""The console script: `kvmhub ls` through a server, and `kvmhub top --once`, `kvmhub ls`, `kvmhub exec` and
`kvmhub snapshot revert|rm` of an internal snapshot here, are answered without loading the whole CLI."""

from __future__ import annotations

import os
import sys


def answered(argv: list[str]) -> int | None:
    """The exit code when a form of :mod:`kvmhub.cli.fast` or its siblings answered the command; None when the
    full CLI must run it."""
    from kvmhub.cli import fast

    code = fast.run(argv)
    if code is None:
        from kvmhub.cli import fast_local

        code = fast_local.run(argv)
    if code is None:
        from kvmhub.cli import fast_exec

        code = fast_exec.run(argv)
    if code is None:
        from kvmhub.cli import fast_snapshot

        code = fast_snapshot.run(argv)
    return code


def main() -> None:
    """Run the command (see :func:`answered` for the forms answered before the full CLI loads)."""
    code = answered(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        # no interpreter teardown (~8 ms with 500 VMs: each libvirt object freed, the connection closed through
        # libvirtd): what the command says is written, and it holds nothing else to flush or finish
        os._exit(code)
    from kvmhub.cli.main import main as full

    full()
