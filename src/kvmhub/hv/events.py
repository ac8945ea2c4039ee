"""libvirt's domain event API: callbacks on the event-loop thread feed a thread-safe queue.

An :class:`EventSubscription` registers one callback per event kind with ``domainEventRegisterAny`` (for
every domain, or one), turns each event into a :class:`RawEvent` and queues it; the reader takes them with
:meth:`EventSubscription.get`. :meth:`EventSubscription.close` deregisters every callback.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Any

import libvirt

from kvmhub.hv.connection import Hypervisor
from kvmhub.hv.domains import Domain

_LIFECYCLE = (
    "DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED", "STOPPED", "SHUTDOWN", "PMSUSPENDED", "CRASHED",
)  # fmt: skip


def _names(prefix: str) -> dict[int, str]:
    """{code: 'lower-case-name'} for libvirt's constants VIR_..._<PREFIX>_<NAME>."""
    out: dict[int, str] = {}
    for attr in dir(libvirt):
        if attr.startswith(prefix) and not attr.endswith("_LAST"):
            out[int(getattr(libvirt, attr))] = attr[len(prefix) :].lower().replace("_", "-")
    return out


LIFECYCLE_EVENTS = {int(getattr(libvirt, f"VIR_DOMAIN_EVENT_{n}")): n.lower() for n in _LIFECYCLE}
LIFECYCLE_DETAILS = {
    int(getattr(libvirt, f"VIR_DOMAIN_EVENT_{n}")): _names(f"VIR_DOMAIN_EVENT_{n}_") for n in _LIFECYCLE
}
_AGENT_STATES = _names("VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_")
_WATCHDOG_ACTIONS = _names("VIR_DOMAIN_EVENT_WATCHDOG_")
_IO_ACTIONS = _names("VIR_DOMAIN_EVENT_IO_ERROR_")


@dataclass(frozen=True)
class RawEvent:
    """One event as received: when, which domain, what kind, what happened, details."""

    at: float
    vm: str
    uuid: str
    kind: str
    event: str
    detail: str | None = None


class EventSubscription:
    """Callbacks registered for domain events; events wait in a queue until read."""

    def __init__(self, hv: Hypervisor, domain: Domain | None = None, maxsize: int = 10_000) -> None:
        self.hv = hv
        self._queue: queue.Queue[RawEvent] = queue.Queue(maxsize)
        self._ids: list[int] = []
        self.dropped = 0
        target = domain.handle if domain is not None else None
        handlers: list[tuple[int, Any]] = [
            (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle),
            (libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._on_reboot),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._device("device-added")),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._device("device-removed")),
            (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED, self._device("device-removal-failed")),
            (libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR, self._on_io_error),
            (libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, self._on_watchdog),
            (libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent),
            (libvirt.VIR_DOMAIN_EVENT_ID_TUNABLE, self._on_tunable),
            (libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE, self._on_balloon),
        ]
        try:
            for event_id, callback in handlers:
                self._ids.append(
                    hv.call(
                        hv.conn.domainEventRegisterAny,
                        target,
                        event_id,
                        callback,
                        None,
                        what="subscribing to VM events",
                    )
                )
        except BaseException:
            self.close()
            raise

    def get(self, timeout: float) -> RawEvent | None:
        """The next event, or None when none came within `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Deregister every callback (best effort: a dead connection has none left anyway)."""
        ids, self._ids = self._ids, []
        for callback_id in ids:
            try:
                self.hv.call(
                    self.hv.conn.domainEventDeregisterAny, callback_id, what="unsubscribing from VM events",
                    timeout=5.0,
                )
            except Exception:  # noqa: S112 - the connection may be gone; nothing is left to deregister
                continue

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- callbacks (run on libvirt's event-loop thread) --------------------------------------------------

    def _put(self, dom: Any, kind: str, event: str, detail: str | None = None) -> None:
        raw = RawEvent(time.time(), str(dom.name()), str(dom.UUIDString()), kind, event, detail)
        try:
            self._queue.put_nowait(raw)
        except queue.Full:
            self.dropped += 1  # a reader that stopped reading must not stall libvirt's event loop

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        name = LIFECYCLE_EVENTS.get(event, f"event-{event}")
        self._put(dom, "lifecycle", name, LIFECYCLE_DETAILS.get(event, {}).get(detail, str(detail)))

    def _on_reboot(self, _conn: Any, dom: Any, _opaque: Any) -> None:
        self._put(dom, "reboot", "rebooted")

    def _device(self, kind: str) -> Any:
        def callback(_conn: Any, dom: Any, alias: str, _opaque: Any) -> None:
            self._put(dom, kind, str(alias))

        return callback

    def _on_io_error(self, _conn: Any, dom: Any, path: str, dev: str, action: int, _opaque: Any) -> None:
        self._put(dom, "io-error", str(dev), f"{path}: {_IO_ACTIONS.get(action, action)}")

    def _on_watchdog(self, _conn: Any, dom: Any, action: int, _opaque: Any) -> None:
        self._put(dom, "watchdog", _WATCHDOG_ACTIONS.get(action, str(action)))

    def _on_agent(self, _conn: Any, dom: Any, state: int, _reason: int, _opaque: Any) -> None:
        self._put(dom, "agent", _AGENT_STATES.get(state, str(state)))

    def _on_tunable(self, _conn: Any, dom: Any, params: dict[str, Any], _opaque: Any) -> None:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        self._put(dom, "tunable", "changed", detail)

    def _on_balloon(self, _conn: Any, dom: Any, actual_kib: int, _opaque: Any) -> None:
        self._put(dom, "balloon", "changed", f"{int(actual_kib) // 1024} MiB")
