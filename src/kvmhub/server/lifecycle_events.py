"""libvirt's domain events into the server's event bus: ``lifecycle`` (started, stopped, suspended, resumed,
crashed, defined, undefined, rebooted...) and ``device`` (added, removed, removal-failed).

One thread reads :func:`kvmhub.services.monitor.events.stream` on the server's own connection and publishes
each event with the VM's name and project; while an API operation acts on that VM (or just finished), the
event names the operation and who asked for it. A lost connection to libvirtd is retried until stopped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.models.stats import Event
from kvmhub.server.bus import EventBus, EventType
from kvmhub.server.runner import Runner
from kvmhub.services.monitor import events as monitor
from kvmhub.services.vm import lifecycle as vms
from kvmhub.services.vm import listing
from kvmhub.xml.domain import domain_from_xml

log = logging.getLogger(__name__)
RETRY_S = 5.0


def classify(event: Event) -> tuple[EventType, dict[str, Any]] | None:
    """The bus type and data of a libvirt event, or None for kinds the bus does not carry."""
    if event.kind == "lifecycle":
        return "lifecycle", {"event": event.event, "detail": event.detail}
    if event.kind == "reboot":
        return "lifecycle", {"event": "rebooted", "detail": None}
    if event.kind.startswith("device-"):
        return "device", {"event": event.kind.removeprefix("device-"), "device": event.event}
    return None


class LifecycleFeed:
    """Publishes libvirt's events for every VM of ``hv`` on ``bus`` from :meth:`start` until :meth:`stop`."""

    def __init__(self, hv: Hypervisor, bus: EventBus, runner: Runner, *, retry_s: float = RETRY_S) -> None:
        self.hv = hv
        self.bus = bus
        self.runner = runner
        self.retry_s = retry_s
        self.ready = threading.Event()  # set once libvirt's callbacks are registered
        self._stop = threading.Event()
        self._projects: dict[str, str | None] = {}
        self._thread = threading.Thread(target=self._run, name="lifecycle-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in monitor.stream(self.hv, stop=self._stop, on_ready=self.ready.set):
                    self.publish(event)
            except KvmhubError as exc:
                log.warning("libvirt events interrupted (%s); subscribing again in %.0f s", exc, self.retry_s)
            except Exception:  # a defect must not end the feed for the server's lifetime
                log.exception("libvirt events failed; subscribing again in %.0f s", self.retry_s)
            self.ready.clear()
            self._stop.wait(self.retry_s)

    def publish(self, event: Event) -> None:
        """Put one libvirt event on the bus (kinds the bus does not carry are left out)."""
        listing.changed(event.vm)  # any event, carried or not (balloon, tunables...), may change the VM's row
        classified = classify(event)
        if classified is None:
            return
        type_, data = classified
        if event.kind == "lifecycle" and event.event in ("defined", "undefined"):
            self._projects.pop(event.vm, None)
        actor = self.runner.actor(event.vm)
        self.bus.publish(type_, data, vm=event.vm, project=self._project(event.vm),
                         operation=actor.operation if actor else None,
                         requested_by=actor.requested_by if actor else None)

    def _project(self, name: str) -> str | None:
        """The project in the VM's kvmhub metadata (read once per definition); None when it has none or is gone."""
        if name not in self._projects:
            try:
                self._projects[name] = domain_from_xml(vms.get(self.hv, name).xml(inactive=True)).meta.project
            except KvmhubError:
                return None
        return self._projects[name]
