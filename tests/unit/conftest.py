"""Unit-test options and fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kvmhub.hv import Hypervisor

PAUSED = 3  # libvirt's VIR_DOMAIN_PAUSED


@pytest.fixture
def regenerate_output(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files."""
    return bool(request.config.getoption("--regenerate-output", default=False))


@pytest.fixture(autouse=True)
def test_driver_vm_left_running() -> Iterator[None]:
    """libvirt's test driver keeps its state for the whole process: put its VM "test" back to running after a
    test that stopped or paused it, for the tests after it."""
    yield
    with Hypervisor("test:///default") as hv:
        dom = hv.conn.lookupByName("test")
        if dom.state()[0] == PAUSED:
            dom.resume()
        elif not dom.isActive():
            dom.create()
