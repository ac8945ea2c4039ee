"""`kvmhub events`: libvirt's lifecycle and device events, streamed as they happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from kvmhub.errors import HostProblem
from kvmhub.hv import Hypervisor
from kvmhub.hv import stats as hv_stats
from kvmhub.hv.events import EventSubscription, RawEvent
from kvmhub.models.stats import Event
from kvmhub.services.vm.lifecycle import get

POLL_S = 1.0


def to_event(raw: RawEvent) -> Event:
    return Event(time=raw.at, vm=raw.vm, uuid=raw.uuid, kind=raw.kind, event=raw.event, detail=raw.detail)


def stream(
    hv: Hypervisor,
    vm: str | None = None,
    *,
    stop: threading.Event | None = None,
    duration: float | None = None,
    count: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[Event]:
    """Yield events (of one VM, or all) until `stop` is set, `duration` seconds pass or `count` came.

    The subscription is dropped when the generator is closed. Raises NotFound for an unknown VM and
    HostProblem when the connection to libvirtd is lost. `on_ready` runs once the subscription is in place.
    """
    domain = get(hv, vm) if vm is not None else None
    deadline = None if duration is None else time.monotonic() + duration
    seen = 0
    with EventSubscription(hv, domain) as sub:
        if on_ready is not None:
            on_ready()
        while (stop is None or not stop.is_set()) and (count is None or seen < count):
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return
            raw = sub.get(wait)
            if raw is None:
                if not hv_stats.connection_alive(hv):
                    raise HostProblem(
                        "lost the connection to libvirtd while waiting for events",
                        cause="libvirtd restarted or stopped",
                        hint="run {cmd:events} again once libvirtd answers (`virsh version`)",
                    )
                continue
            seen += 1
            yield to_event(raw)
