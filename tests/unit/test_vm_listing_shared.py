"""Callers listing VMs at the same time share listings, and none is answered by one that began before it asked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from kvmhub.errors import OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.models import VMInfo
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


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per listing read from libvirt from now on."""
    counted: list[int] = []
    real = lifecycle.list_vms

    def counting(h: Hypervisor) -> list[VMInfo]:
        counted.append(1)
        return real(h)

    monkeypatch.setattr(lifecycle, "list_vms", counting)
    return counted


def test_a_listing_is_kept_until_a_change_or_its_age_and_a_fresh_one_is_read_on_demand(
        monkeypatch: pytest.MonkeyPatch, reads: list[int]) -> None:
    hv = Hypervisor("test:///default")
    try:
        listing.changed()
        first = listing.list_vms_json(hv)
        read = len(reads)
        assert listing.list_vms_json(hv) == first and len(reads) == read  # kept
        listing.list_vms_json(hv, fresh=True)
        assert len(reads) == read + 1
        hv.conn.lookupByName("test").suspend()
        read = len(reads)
        listing.changed()  # not answered again; read again in the background
        wait_for(lambda: listing.kept(hv) is not None, "no listing was read in the background after a change")
        assert len(reads) > read
        read = len(reads)
        kept = listing.list_vms_json(hv)
        assert b'"paused"' in kept and len(reads) == read  # the caller after the change did not wait for a read
        monkeypatch.setattr(listing, "MAX_AGE_S", 0.0)  # old: still answered, and read again in the background
        assert listing.list_vms_json(hv) is kept
        wait_for(lambda: len(reads) > read, "no listing was read in the background past its age")
        monkeypatch.setattr(listing, "STALE_S", 0.0)  # too old to answer at all: read before answering
        read = len(reads)
        assert b'"paused"' in listing.list_vms_json(hv) and len(reads) > read
    finally:
        hv.close()


def wait_for(done: Callable[[], bool], why: str) -> None:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, why
        time.sleep(0.01)


def test_the_server_s_listing_follows_its_own_calls_and_libvirt_s_events(client: TestClient) -> None:
    assert [v["state"] for v in client.get("/api/v1/vms").json()] == ["running"]
    paused = client.post("/api/v1/vms/test/pause")
    assert paused.status_code == 202
    assert client.get(paused.headers["location"] + "/wait").json()["state"] == "succeeded"
    assert [v["state"] for v in client.get("/api/v1/vms").json()] == ["paused"]
    hv = Hypervisor("test:///default")  # a change made behind the server's back, as virsh would
    try:
        hv.conn.lookupByName("test").resume()
    finally:
        hv.close()
    deadline = time.monotonic() + 5
    while client.get("/api/v1/vms").json()[0]["state"] != "running":
        assert time.monotonic() < deadline, "the listing never showed the change"
        time.sleep(0.05)


def test_a_listing_read_before_the_connection_was_given_up_is_not_answered_again() -> None:
    hv = Hypervisor("test:///default", timeout=0.2)
    try:
        listing.changed()
        listing.list_vms_json(hv)
        assert listing.kept(hv) is not None
        with pytest.raises(OperationTimeout):  # as against a stalled libvirtd
            hv.call(time.sleep, 1, what="waiting")
        assert listing.kept(hv) is None
    finally:
        hv.close()


def test_while_an_operation_runs_the_listing_is_read_again_only_after_its_end(reads: list[int]) -> None:
    hv = Hypervisor("test:///default")
    try:
        listing.list_vms_json(hv, fresh=True)
        listing.operation_started()
        read = len(reads)
        listing.changed()  # e.g. the VM's own lifecycle event, while it starts
        time.sleep(listing.SETTLE_S * 5)
        assert len(reads) == read and listing.kept(hv) is None  # nothing read meanwhile, nothing kept answered
        listing.operation_ended()
        wait_for(lambda: listing.kept(hv) is not None, "no listing was read after the operation ended")
        assert len(reads) > read
    finally:
        hv.close()


def test_a_change_of_one_vm_reads_its_row_alone(reads: list[int]) -> None:
    hv = Hypervisor("test:///default")
    try:
        listing.list_vms_json(hv, fresh=True)
        time.sleep(listing.SETTLE_S * 5)  # whatever other hosts' listings were reading in the background
        read = len(reads)
        hv.conn.lookupByName("test").suspend()
        listing.changed("test")  # as its lifecycle event says
        assert listing.kept(hv) is None  # not answered as it was, and not read in the background
        time.sleep(listing.SETTLE_S * 5)
        assert len(reads) == read
        assert [(v.name, v.state) for v in listing.list_vms(hv)] == [("test", "paused")]
        assert len(reads) == read and listing.kept(hv) is not None  # the row was read again, not the host
        hv.conn.defineXML(NEW_VM)
        listing.changed("new1")
        assert [v.name for v in listing.list_vms(hv)] == ["new1", "test"]
        hv.conn.lookupByName("new1").undefine()
        listing.changed("new1")
        assert [v.name for v in listing.list_vms(hv)] == ["test"] and len(reads) == read
        listing.operation_started("test")
        hv.conn.lookupByName("test").resume()
        listing.operation_ended("test")
        assert [v.state for v in listing.list_vms(hv)] == ["running"] and len(reads) == read
    finally:
        hv.close()


def test_a_change_of_one_vm_while_another_change_is_pending_reads_the_host(reads: list[int]) -> None:
    hv = Hypervisor("test:///default")
    try:
        listing.list_vms_json(hv, fresh=True)
        time.sleep(listing.SETTLE_S * 5)  # whatever other hosts' listings were reading in the background
        read = len(reads)
        listing.operation_started()
        listing.changed("test")
        listing.changed()  # put off while the operation runs
        assert listing.kept(hv) is None
        listing.operation_ended("test")  # the last one: the whole read put off is made now
        wait_for(lambda: listing.kept(hv) is not None, "the read put off was not made when the operations ended")
        assert len(reads) > read
    finally:
        hv.close()


NEW_VM = """<domain type='test'><name>new1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>"""
