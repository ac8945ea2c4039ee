"""A kvmhub server in this process (uvicorn on a temporary unix socket, over libvirt's test driver), and the CLI
run as a user runs it, in a process of its own: how the CLI-through-the-server tests compare the two modes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from kvmhub.server.app import create_app
from kvmhub.server.serve import unix_socket
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked

URI = "test:///default"
Result = tuple[int, str, str]


@contextmanager
def serving(root: Path) -> Iterator[str]:
    """A server with its state under ``root``; yields its address (``unix:PATH``) for ``--remote``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KVMHUB_STATE_DIR", str(root / "state"))
        patch.setenv("KVMHUB_REMOTES", str(root / "remotes.json"))
        sock_path = root / "kvmhub.sock"
        sock = unix_socket(sock_path)
        config = uvicorn.Config(Marked(create_app(ServerSettings(uri=URI, socket=None)), "unix"),
                                log_level="warning")
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not srv.started:
            time.sleep(0.02)
        try:
            yield f"unix:{sock_path}"
        finally:
            srv.should_exit = True
            thread.join(10)


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> Result:
    """The command (exit code, stdout, stderr); ``--local`` first runs it over a fresh test driver, as the
    server's started."""
    argv = ["--connect", URI, *args] if args[0] == "--local" else list(args)
    env = {**os.environ, "KVMHUB_URI": "", "KVMHUB_REMOTE": "", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "kvmhub.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=90, check=False, input=stdin, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def both(server: str, *args: str) -> tuple[Result, Result]:
    """The command in library mode, then through ``server``."""
    return run("--local", *args), run("--remote", server, *args)


def cli(*args: str) -> str:
    """The command's output, run in this process in library mode over the test driver (exit code 0 asserted)."""
    from typer.testing import CliRunner

    from kvmhub.cli.main import app

    result = CliRunner().invoke(app, ["--local", "--connect", URI, *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output
