"""The server's events (``/api/v1/events``, a WebSocket) as the libvirt events ``kvmhub events`` prints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

from websockets.exceptions import ConnectionClosed

from kvmhub.client.transport import Transport
from kvmhub.client.websocket import open_websocket
from kvmhub.errors import HostProblem, NotFound
from kvmhub.models.stats import Event

POLL_S = 0.5


def watch(transport: Transport, vm: str | None = None, *, stop: threading.Event | None = None,
          duration: float | None = None, count: int | None = None, on_ready: Callable[[], None] | None = None,
          on_missed: Callable[[int], None] | None = None) -> Iterator[Event]:
    """Yield the server's lifecycle and device events (of one VM, or all) until ``stop`` is set, ``duration``
    seconds pass or ``count`` came; ``on_missed`` hears how many the server could not send."""
    uuids: dict[str, str] = {}
    if vm is not None:
        uuids[vm] = _uuid(transport, vm, missing_ok=False)
    query = [("type", "lifecycle"), ("type", "device"), *([("vm", vm)] if vm is not None else [])]
    deadline = None if duration is None else time.monotonic() + duration
    seen = 0
    with open_websocket(transport, f"/events?{urlencode(query)}") as ws:
        if on_ready is not None:
            on_ready()
        while (stop is None or not stop.is_set()) and (count is None or seen < count):
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return
            try:
                message = ws.recv(timeout=wait)
            except TimeoutError:
                continue
            except ConnectionClosed:
                raise HostProblem(f"the kvmhub server at {transport.url} closed the event stream",
                                  cause="it stopped or restarted", hint="run {cmd:events} again once it answers",
                                  code="host.problem") from None
            data = json.loads(message)
            if data.get("type") == "missed":
                if on_missed is not None:
                    on_missed(int(data.get("data", {}).get("count", 0)))
                continue
            event = _event(transport, data, uuids)
            if event is not None:
                seen += 1
                yield event


def _event(transport: Transport, data: dict[str, Any], uuids: dict[str, str]) -> Event | None:
    """A bus event as libvirt's event it came from (None for the kinds ``kvmhub events`` does not show)."""
    name, facts = data.get("vm"), data.get("data") or {}
    if not isinstance(name, str):
        return None
    if name not in uuids:
        uuids[name] = _uuid(transport, name, missing_ok=True)
    if data.get("type") == "lifecycle":
        kind = "reboot" if facts.get("event") == "rebooted" else "lifecycle"
        return Event(time=data["time"], vm=name, uuid=uuids[name], kind=kind, event=str(facts.get("event")),
                     detail=facts.get("detail"))
    if data.get("type") == "device":
        return Event(time=data["time"], vm=name, uuid=uuids[name], kind=f"device-{facts.get('event')}",
                     event=str(facts.get("device")))
    return None


def _uuid(transport: Transport, vm: str, *, missing_ok: bool) -> str:
    """The VM's UUID (the server's events name VMs only); "" for one gone by now when ``missing_ok``."""
    try:
        found = transport.request("GET", "/vms/" + quote(vm, safe=""))
    except NotFound:
        if missing_ok:
            return ""
        raise
    return str(found.get("uuid", "")) if isinstance(found, dict) else ""


