"""The server's event stream: every event gets a sequence number and stays in a ring for clients catching up.

Publishers are worker threads (operations) and libvirt's event thread; subscribers are WebSocket handlers on the
event loop. A subscriber that falls behind, or asks to resume from a number that has left the ring, is told
how many events it missed rather than silently losing them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["operation", "lifecycle", "device", "missed"]
RING = 10_000
QUEUE = 1_000


class ServerEvent(BaseModel):
    """One event as clients receive it. ``missed`` events say how many a client did not get (``data.count``)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    time: float
    type: EventType
    operation: str | None = None
    vm: str | None = None
    project: str | None = None
    requested_by: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[ServerEvent] = asyncio.Queue(QUEUE)
        self.dropped = 0

    def offer(self, event: ServerEvent) -> None:
        """On the loop's thread: queue it, or count it as missed when the client is too slow."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class EventBus:
    """Numbered events in a ring, fanned out to subscribers; safe to publish from any thread."""

    def __init__(self, keep: int = RING) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._ring: deque[ServerEvent] = deque(maxlen=keep)
        self._subs: set[_Subscriber] = set()

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(self, type_: EventType, data: dict[str, Any], *, operation: str | None = None,
                vm: str | None = None, project: str | None = None, requested_by: str | None = None) -> ServerEvent:
        with self._lock:
            self._seq += 1
            event = ServerEvent(seq=self._seq, time=time.time(), type=type_, operation=operation, vm=vm,
                                project=project, requested_by=requested_by, data=data)
            self._ring.append(event)
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, event)
            except RuntimeError:  # its loop is closed: the client is gone
                with self._lock:
                    self._subs.discard(sub)
        return event

    def since(self, seq: int) -> tuple[list[ServerEvent], int]:
        """Events after ``seq`` still in the ring, and how many after it are no longer there."""
        with self._lock:
            events = [e for e in self._ring if e.seq > seq]
            oldest = self._ring[0].seq if self._ring else self._seq + 1
        missed = max(0, oldest - seq - 1) if seq < self._seq else 0
        return events, missed

    @contextmanager
    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Iterator[_Subscriber]:
        sub = _Subscriber(loop)
        with self._lock:
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)
