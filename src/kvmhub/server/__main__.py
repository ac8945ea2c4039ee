"""The server's own process: `kvmhub serve` checks its options and becomes this (``python -m kvmhub.server``), so
the server carries none of the command line's modules.

Its settings come as JSON in ``$KVMHUB_SERVE_SETTINGS``; an error it stops on is printed as the command line
prints errors, with the same exit code.
"""

from __future__ import annotations

import os
import sys

from kvmhub.errors import KvmhubError, exit_code, report_lines
from kvmhub.server.serve import serve
from kvmhub.server.settings import SETTINGS_ENV, ServerSettings


def main() -> int:
    """Serve with the settings `kvmhub serve` passed; the exit code."""
    text = os.environ.pop(SETTINGS_ENV, None)
    if text is None:
        print(f"error: {SETTINGS_ENV} is not set: start the server with `kvmhub serve`", file=sys.stderr)
        return 2
    try:
        serve(ServerSettings.from_json(text), say=lambda line: print(line, file=sys.stderr, flush=True))
    except KvmhubError as exc:
        print("\n".join(report_lines(exc)), file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
