"""`kvmhub serve`: the REST API server (see README, "Server")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import output, state


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
    from kvmhub.server.serve import serve as run
    from kvmhub.server.settings import ServerSettings

    settings = ServerSettings(uri=state.URI or "", socket=None if no_socket else socket, listen=listen,
                              tls_cert=tls_cert, tls_key=tls_key, insecure_http=insecure_http,
                              libvirt_timeout=state.TIMEOUT)
    run(settings, say=output.say)


def register(app: typer.Typer) -> None:
    """Add the command to the top-level app."""
    app.command()(serve)
