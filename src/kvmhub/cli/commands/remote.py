"""`kvmhub remote add|ls|rm`: kvmhub servers this CLI can work through (`--remote NAME`, `$KVMHUB_REMOTE`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kvmhub.cli import output

app = typer.Typer(help="kvmhub servers to work through: kvmhub --remote NAME COMMAND ...", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="what to call it")],
    url: Annotated[str, typer.Argument(help="https://HOST:PORT (kvmhub serve --listen), or unix:/PATH")],
    token: Annotated[str | None, typer.Option(help="an API token (`kvmhub token add` on the server)")] = None,
    token_file: Annotated[Path | None, typer.Option(help="read the token from this file ('-': standard input)")]
    = None,
    fingerprint: Annotated[str | None, typer.Option(help="the certificate's SHA-256 fingerprint as the server "
                                                         "printed it (default: pin the one presented now)")] = None,
) -> None:
    """Remember a server: its TLS certificate is pinned now, and the token is checked against it."""
    import sys

    from kvmhub.client import remotes
    from kvmhub.errors import InvalidInput

    if token is not None and token_file is not None:
        raise InvalidInput("give {opt:token} or {opt:token_file}, not both")
    if token_file is not None:
        token = (sys.stdin.read() if str(token_file) == "-" else token_file.read_text()).strip() or None
    remote = remotes.add(name, url, token, fingerprint.upper() if fingerprint else None)
    pinned = f"; certificate pinned: {remote.fingerprint}" if remote.fingerprint else ""
    output.say(f"remote {name} added ({url}){pinned}")


@app.command("ls")
def ls(json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Known servers (tokens are not shown)."""
    from kvmhub.client import remotes

    found = sorted(remotes.load().values(), key=lambda r: r.name)
    if json_out:
        output.print_json([{**r.to_json(), "token": r.token is not None} for r in found])
        return
    output.table(["NAME", "URL", "TOKEN", "FINGERPRINT"],
                 [(r.name, r.url, "yes" if r.token else "", r.fingerprint or "") for r in found])


@app.command("rm")
def rm(name: str) -> None:
    """Forget a server."""
    from kvmhub.client import remotes

    remotes.remove(name)
    output.say(f"remote {name} removed")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="remote")
