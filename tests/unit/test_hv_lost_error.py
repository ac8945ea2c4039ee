"""A libvirt call whose error reason was taken away (libvirt keeps it per thread, and any libvirt function that a
garbage-collected object's finalizer calls in that thread clears it): a read-only call is made again."""

from __future__ import annotations

from collections.abc import Callable

import libvirt
import pytest

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv import Hypervisor


def _flaky(outcomes: list[object]) -> Callable[[], object]:
    def call() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call


def test_a_read_only_call_whose_reason_was_lost_is_made_again() -> None:
    hv = Hypervisor("test:///default")
    try:
        lost = libvirt.libvirtError("virDomainLookupByName() failed")  # made with no libvirt error set
        assert lost.get_error_code() is None
        assert hv.call(_flaky([lost, 7]), what="looking up VM 'x'", retry=True) == 7
        tries: list[int] = []

        def lookup() -> object:
            tries.append(1)
            if len(tries) == 1:
                raise lost
            return hv.conn.lookupByName("no-such-vm")

        with pytest.raises(NotFound):  # the reason the second call gives is the one reported
            hv.call(lookup, what="looking up VM 'no-such-vm'", retry=True)
        assert len(tries) == 2
        with pytest.raises(KvmhubError, match="virDomainLookupByName"):  # a call that changes things is not
            hv.call(_flaky([lost, 7]), what="starting VM 'x'")
    finally:
        hv.close()


class _Handle:
    """A libvirt domain whose metadata reads give ``outcomes`` in turn."""

    def __init__(self, real: object, outcomes: list[object]) -> None:
        self.real = real
        self.read = _flaky(outcomes)

    def name(self) -> str:
        return "test"

    def UUIDString(self) -> str:
        return str(self.real.UUIDString())  # type: ignore[attr-defined]

    def state(self) -> object:
        return self.metadata()

    def metadata(self, *args: object) -> object:
        outcome = self.read()
        return outcome(*args) if callable(outcome) else outcome


def test_a_metadata_read_whose_reason_was_lost_is_made_again_and_not_taken_for_no_metadata() -> None:
    from kvmhub.hv import domains as hv_domains

    lost = libvirt.libvirtError("virDomainGetMetadata() failed")
    with Hypervisor("test:///default") as hv:
        real = hv.conn.lookupByName("test")
        uuid = real.UUIDString()
        dom = hv_domains.Domain(hv, _Handle(real, [lost, "<vm/>"]))
        assert hv_domains.metadata_of(hv, [dom], frozenset()) == {uuid: "<vm/>"}
        # the VM without kvmhub metadata: the second read's reason says so
        none = hv_domains.Domain(hv, _Handle(real, [lost, real.metadata]))
        assert hv_domains.metadata_of(hv, [none], frozenset()) == {uuid: None}
        # lost twice: a failure, said as one
        twice = hv_domains.Domain(hv, _Handle(real, [lost, lost]))
        with pytest.raises(KvmhubError, match="reading VM metadata"):
            hv_domains.metadata_of(hv, [twice], frozenset())


def test_a_vm_read_whose_reason_was_lost_is_made_again_and_a_change_is_not() -> None:
    from kvmhub.hv import domains as hv_domains

    lost = libvirt.libvirtError("virDomainGetState() failed")
    with Hypervisor("test:///default") as hv:
        real = hv.conn.lookupByName("test")
        assert hv_domains.Domain(hv, _Handle(real, [lost, [1, 1]])).state() == "running"
        dom = hv_domains.Domain(hv, _Handle(real, [lost, 7]))
        with pytest.raises(KvmhubError, match="virDomainGetState"):
            dom.call("changing", dom.handle.state)  # not a read: said as it failed
