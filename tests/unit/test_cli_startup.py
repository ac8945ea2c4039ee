"""The CLI starts light: loading its commands pulls in neither pydantic and the models nor the server."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "kvmhub.models", "kvmhub.server", "fastapi", "uvicorn", "lxml")


def test_loading_the_cli_leaves_heavy_modules_for_the_command_that_needs_them() -> None:
    probe = f"import sys, kvmhub.cli.main; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"imported at start-up: {loaded} (import them inside the command that uses them)"
