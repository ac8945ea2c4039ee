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
