"""Callers listing VMs at the same time share listings, and none is answered by one that began before it asked."""

from __future__ import annotations

import threading
import time

from kvmhub.hv import Hypervisor
from kvmhub.services.vm import lifecycle, listing
from kvmhub.services.vm.listing import SharedRun


class Host:
    """A stand-in for a host whose listing takes a while; counts the listings made and when each began."""

    def __init__(self, seconds: float = 0.2) -> None:
        self.seconds = seconds
        self.began: list[float] = []
        self.lock = threading.Lock()

    def listing(self) -> float:
        start = time.monotonic()
        with self.lock:
            self.began.append(start)
        time.sleep(self.seconds)
        return start


def callers(run: SharedRun[float], host: Host, count: int) -> list[tuple[float, float]]:
    """``count`` threads asking at once: for each, (when it asked, when the listing it got began)."""
    out: list[tuple[float, float]] = []
    lock = threading.Lock()

    def ask() -> None:
        asked = time.monotonic()
        began = run.get(host.listing)
        with lock:
            out.append((asked, began))

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join(10)
    return out


def test_callers_at_the_same_time_share_listings_begun_after_they_asked() -> None:
    host, run = Host(), SharedRun[float]()
    answers = callers(run, host, 8)
    assert len(answers) == 8
    assert len(host.began) <= 3  # the first caller's listing, then one for all who came while it ran
    assert all(began >= asked for asked, began in answers)


def test_a_caller_alone_gets_a_new_listing_each_time() -> None:
    host, run = Host(0.0), SharedRun[float]()
    run.get(host.listing)
    run.get(host.listing)
    assert len(host.began) == 2


def test_every_caller_sharing_a_failed_listing_sees_its_error_and_the_next_one_lists_again() -> None:
    run = SharedRun[float]()
    release = threading.Event()
    errors: list[str] = []

    def failing() -> float:
        release.wait(5)
        raise RuntimeError("libvirtd went away")

    def ask() -> None:
        try:
            run.get(failing)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    release.set()
    for t in threads:
        t.join(10)
    assert errors == ["libvirtd went away"] * 3
    assert run.get(lambda: 1.0) == 1.0


def test_the_shared_listing_and_its_json_are_those_of_the_host() -> None:
    hv = Hypervisor("test:///default")
    try:
        alone = lifecycle.list_vms(hv)
        assert listing.list_vms(hv) == alone
        assert listing.list_vms_json(hv) == listing.VM_LIST.dump_json(alone)
        assert [v.name for v in alone] == ["test"]
    finally:
        hv.close()
