"""`kvmhub serve`: the REST API server (see README, "Server")."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import state


def serve(
    socket: Annotated[Path, typer.Option(help="unix socket (root and group kvmhub)")] = Path("/run/kvmhub/kvmhub.sock"),
    no_socket: Annotated[bool, typer.Option("--no-socket", help="serve TCP only")] = False,
    listen: Annotated[str | None, typer.Option(help="ADDR:PORT for TCP, TLS unless --insecure-http")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM); default: a self-signed one")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    insecure_http: Annotated[bool, typer.Option("--insecure-http", help="TCP without TLS")] = False,
) -> None:
    """Serve kvmhub's REST API (/api/v1, OpenAPI at /openapi.json, docs at /docs) until stopped.

    On the unix socket callers are root or group kvmhub and act as admin; on TCP they present a token. Long
    work answers 202 with an operation to follow; operations a previous server left running are taken back
    at start.
    """
    from kvmhub.server.settings import SETTINGS_ENV, ServerSettings

    settings = ServerSettings(uri=state.URI or "", socket=None if no_socket else socket, listen=listen,
                              tls_cert=tls_cert, tls_key=tls_key, insecure_http=insecure_http,
                              libvirt_timeout=state.TIMEOUT)
    sys.stdout.flush()
    sys.stderr.flush()
    # the server runs in a process of its own (the same pid): it keeps none of the command line's modules
    os.execve(sys.executable, [sys.executable, "-m", "kvmhub.server"],  # noqa: S606 (the interpreter: no shell)
              {**os.environ, SETTINGS_ENV: settings.to_json()})


def register(app: typer.Typer) -> None:
    """Add the command to the top-level app."""
    app.command()(serve)
