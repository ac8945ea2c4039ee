"""``/events`` (WebSocket): the server's events as they happen, filtered by VM, project and type.

Each message is one :class:`~kvmhub.server.bus.ServerEvent` as JSON. ``since=SEQ`` resumes after event SEQ: what
the ring still holds is replayed first. Events a client cannot get (they left the ring, or it read too slowly)
are announced by a ``missed`` event whose ``data`` holds ``count`` and ``next``, the first seq sent after it;
its own ``seq`` is the last one missed, so resuming from it never asks for them again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, get_args

from fastapi import APIRouter, HTTPException, Query, WebSocket

from kvmhub.models import DEFAULT_PROJECT
from kvmhub.server.auth import VIEWER, Caller
from kvmhub.server.bus import EventBus, EventType, ServerEvent
from kvmhub.server.deps import Bus
from kvmhub.server.websocket import client_gone, close, until_first

router = APIRouter(tags=["events"])
TYPES: tuple[str, ...] = get_args(EventType)
Filter = Annotated[list[str] | None, Query(description="repeat it or give a comma list; any of them matches")]


@dataclass(frozen=True)
class EventFilter:
    """Which events a client asked for; an empty set lets everything through. ``missed`` always passes."""

    vms: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    restricted: bool = False  # the caller sees only ``projects`` (then none when it is empty)

    def matches(self, event: ServerEvent) -> bool:
        if event.type == "missed":
            return True
        return ((not self.vms or event.vm in self.vms)
                and (not (self.projects or self.restricted) or (event.project or DEFAULT_PROJECT) in self.projects)
                and (not self.types or event.type in self.types))


def _values(given: list[str] | None) -> frozenset[str]:
    return frozenset(v.strip() for item in given or () for v in item.split(",") if v.strip())


def event_filter(vm: list[str] | None, project: list[str] | None, type_: list[str] | None,
                 caller_projects: frozenset[str] | None = None) -> EventFilter:
    """The filter from the query; a caller limited to some projects sees only theirs (422 for bad types)."""
    types = _values(type_)
    unknown = sorted(types - set(TYPES))
    if unknown:
        raise HTTPException(422, f"unknown event type {', '.join(unknown)}: use {', '.join(TYPES)}")
    projects = _values(project)
    if caller_projects is not None:
        projects = projects & caller_projects if projects else caller_projects
        return EventFilter(_values(vm), projects, types, restricted=True)
    return EventFilter(_values(vm), projects, types)


@router.websocket("/events", dependencies=[VIEWER])
async def events(ws: WebSocket, bus: Bus, caller: Caller, vm: Filter = None, project: Filter = None,
                 type_: Annotated[list[str] | None, Query(alias="type", description="operation, lifecycle, "
                                                           "device (repeat or comma list)")] = None,
                 since: Annotated[int | None, Query(ge=0, description="resume after this event's seq")] = None
                 ) -> None:
    """Stream events as JSON messages until the client closes."""
    flt = event_filter(vm, project, type_, caller.projects)
    await ws.accept()
    await until_first(lambda: _stream(ws, bus, flt, since), lambda: client_gone(ws))
    await close(ws)


async def _stream(ws: WebSocket, bus: EventBus, flt: EventFilter, since: int | None) -> None:
    with bus.subscribe(asyncio.get_running_loop()) as sub:
        last = bus.last_seq
        if since is not None:
            if since > last:  # numbered by an earlier run of the server: everything this one has is new
                await _send(ws, _missed(0, 0, reason="the server restarted: event numbers began again"))
                since = 0
            last = await _catch_up(ws, bus, flt, since)
        while True:
            event = await sub.queue.get()
            if sub.dropped:  # the client read too slowly: what the queue lost is taken from the ring
                sub.dropped = 0
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                last = await _catch_up(ws, bus, flt, last)
                continue
            if event.seq <= last:
                continue
            last = event.seq
            if flt.matches(event):
                await _send(ws, event)


async def _catch_up(ws: WebSocket, bus: EventBus, flt: EventFilter, after: int) -> int:
    """Send what the ring holds after ``after`` (a ``missed`` event first if some are gone); the last seq sent."""
    events, missed = bus.since(after)
    if missed:
        await _send(ws, _missed(after + missed, missed))
    last = after + missed
    for event in events:
        if event.seq > last:
            last = event.seq
            if flt.matches(event):
                await _send(ws, event)
    return last


def _missed(last_missed: int, count: int, reason: str | None = None) -> ServerEvent:
    data: dict[str, object] = {"count": count, "next": last_missed + 1}
    if reason is not None:
        data["reason"] = reason
    return ServerEvent(seq=last_missed, time=time.time(), type="missed", data=data)


async def _send(ws: WebSocket, event: ServerEvent) -> None:
    await ws.send_text(event.model_dump_json())
