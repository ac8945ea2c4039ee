"""`kvmhub top`, `kvmhub events`, `kvmhub metrics`: what the VMs use, what happens to them, for Prometheus."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmhub.cli import output, state, through
from kvmhub.cli.top_rows import COLUMNS
from kvmhub.cli.top_rows import cells as _cells

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.table import Table

    from kvmhub.client.transport import Transport
    from kvmhub.models.stats import VMStats

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
SORT_HELP = "cpu, memory, disk, iops, net, name or state"
# keys accepted while `top` runs, and the sort each picks
_KEYS = {"c": "cpu", "m": "memory", "d": "disk", "i": "iops", "n": "net", "a": "name", "s": "state"}


def register(app: typer.Typer) -> None:
    """Add top, events and metrics to the top-level command."""
    app.command()(top)
    app.command()(events)
    app.command()(metrics)


def _render(rows: list[VMStats], sort: str, reverse: bool, interval: float) -> Table:
    from rich.table import Table

    table = Table(
        title=f"{len(rows)} VMs, sorted by {sort}{' (reversed)' if reverse else ''}, every {interval:g} s",
        caption="sort: c cpu  m memory  d disk  i iops  n net  a name  s state  r reverse   q quit",
        box=None,
        header_style="bold",
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("NAME", "STATE") else "right", no_wrap=True)
    for v in rows:
        table.add_row(*_cells(v))
    return table


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys without Enter) while `top` runs; yields its fd, or None when not a TTY."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_key(fd: int | None, seconds: float) -> str | None:
    if fd is None:
        time.sleep(seconds)
        return None
    ready, _, _ = select.select([fd], [], [], seconds)
    return os.read(fd, 1).decode(errors="replace") if ready else None


def top(
    once: Annotated[bool, typer.Option("--once", help="sample twice, print one table (or --json) and exit")] = False,
    json_out: JsonOpt = False,
    interval: Annotated[
        float | None, typer.Option(help="seconds between samples (default 2; 1 with --once)", min=0.0)
    ] = None,
    sort: Annotated[str, typer.Option(help=f"sort by {SORT_HELP}")] = "cpu",
    reverse: Annotated[bool, typer.Option("--reverse", help="reverse the sort order")] = False,
) -> None:
    """Every VM's CPU %, memory, disk and network rates; refreshes until q or Ctrl-C.

    One getAllDomainStats call per refresh, whatever the number of VMs.
    """
    from kvmhub.services.monitor import top as stats

    stats.sort_rows([], sort)  # refuse an unknown sort key before sampling
    server = state.remote()
    if once or json_out:
        seconds = 1.0 if interval is None else interval
        found = _remote_rows(server, seconds)() if server is not None else stats.top_once(state.hv(), seconds)
        rows = stats.sort_rows(found, sort, reverse=reverse)
        if json_out:
            output.print_json(rows)
        else:
            output.table(COLUMNS, [_cells(v) for v in rows])
        return
    from rich.live import Live

    period = 2.0 if interval is None else max(interval, 0.2)
    # through a server each refresh is one request, whose two samples take a second of the period
    refresh = _remote_rows(server, min(period, 1.0)) if server is not None else stats.Sampler(state.hv()).refresh
    rows = refresh()
    with _keys() as fd, Live(console=output.out, auto_refresh=False, screen=False) as live:
        while True:
            live.update(_render(stats.sort_rows(rows, sort, reverse=reverse), sort, reverse, period), refresh=True)
            deadline = time.monotonic() + period
            while (left := deadline - time.monotonic()) > 0:
                key = _wait_key(fd, left)
                if key in ("q", "Q"):
                    return
                if key == "r":
                    reverse = not reverse
                elif key in _KEYS:
                    sort, reverse = _KEYS[key], False
                else:
                    continue
                live.update(_render(stats.sort_rows(rows, sort, reverse=reverse), sort, reverse, period), refresh=True)
            rows = refresh()


def _remote_rows(server: Transport, interval: float) -> Callable[[], list[VMStats]]:
    """Every VM's rates as the server samples them, ``interval`` seconds apart."""
    from kvmhub.models.stats import VMStats

    def rows() -> list[VMStats]:
        found = through.get(server, "hosts", "local", "vm-stats", query=f"interval={interval:g}")
        return [VMStats.model_validate(v) for v in found]

    return rows


def events(
    vm: Annotated[str | None, typer.Option("--vm", help="only this VM's events")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    count: Annotated[int | None, typer.Option(help="exit after this many events", min=1)] = None,
    duration: Annotated[float | None, typer.Option("--for", help="exit after this many seconds", min=0.0)] = None,
) -> None:
    """Stream lifecycle and device events (start, stop, pause, reboot, device added/removed...) as they happen."""
    stop = threading.Event()
    _stop_on_sigterm(stop)

    def ready(uri: str) -> None:
        output.say(f"watching events of {vm or 'every VM'} on {uri} (Ctrl-C to stop)")

    if (server := state.remote()) is not None:
        from kvmhub.client import events as remote_events

        uri = str(through.get(server, "hosts")[0]["uri"])

        def missed(n: int) -> None:
            output.say(f"warning: the server could not send {n} event(s)")

        found = remote_events.watch(server, vm, stop=stop, duration=duration, count=count,
                                    on_ready=lambda: ready(uri), on_missed=missed)
    else:
        from kvmhub.services.monitor import events as ev

        hv = state.hv()
        found = ev.stream(hv, vm, stop=stop, duration=duration, count=count, on_ready=lambda: ready(hv.uri))

    for e in found:
        if json_out:
            line = json.dumps(e.model_dump(mode="json"))
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(e.time)) + f".{int(e.time * 1000) % 1000:03d}"
            line = f"{stamp}  {e.vm}  {e.kind}  {e.event}" + (f" ({e.detail})" if e.detail else "")
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def metrics(
    listen: Annotated[str, typer.Option(help="ADDR:PORT to serve /metrics on")] = "127.0.0.1:9177",
) -> None:
    """Serve Prometheus metrics (per VM and host) over HTTP until Ctrl-C; names are listed in README.md."""
    from kvmhub.services.monitor import metrics as svc

    stop = threading.Event()
    _stop_on_sigterm(stop)
    server: Any
    if (remote := state.remote()) is not None:
        from kvmhub.client.metrics import relay

        server, _thread = relay(remote, *svc.parse_listen(listen))
    else:
        server, _thread = svc.serve(state.hv(), listen)
    host, port = server.server_address[:2]
    output.say(f"serving metrics on http://{host}:{port}/metrics (Ctrl-C to stop)")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()


def _stop_on_sigterm(stop: threading.Event) -> None:
    """SIGTERM ends a streaming command cleanly (exit 0), as Ctrl-C does interactively."""

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
