"""`Hypervisor.twin`: a second connection to the same host for calls beside a long one, except on libvirt's test
driver, whose state lives in each connection."""

from __future__ import annotations

from kvmhub.hv import Hypervisor


def test_a_twin_is_another_connection_to_the_same_host_closed_after() -> None:
    hv = Hypervisor("qemu+unix:///system?socket=/nonexistent/libvirt-sock", timeout=7.0)
    with hv.twin() as other:
        assert other is not hv
        assert (other.uri, other.timeout) == (hv.uri, hv.timeout)
    assert other._conn is None and hv._conn is None  # opened on first use only, and closed on leaving


def test_on_the_test_driver_a_twin_is_the_connection_itself() -> None:
    hv = Hypervisor("test:///default")
    with hv.twin() as other:
        assert other is hv
        assert other.conn.lookupByName("test").name() == "test"
    assert hv.conn.isAlive()  # not closed by leaving
