"""Unit-test options and fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.hv import Hypervisor
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked

PAUSED = 3  # libvirt's VIR_DOMAIN_PAUSED


@pytest.fixture
def regenerate_output(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files."""
    return bool(request.config.getoption("--regenerate-output", default=False))


@pytest.fixture(autouse=True)
def test_driver_vm_left_running() -> Iterator[None]:
    """libvirt's test driver keeps its state for the whole process: after each test, its VM "test" is running
    again and the VMs a test defined are gone, as the tests after it expect."""
    yield
    with Hypervisor("test:///default") as hv:
        for other in hv.conn.listAllDomains():
            if other.name() != "test":  # a VM a test defined: gone, as in a fresh test driver
                if other.isActive():
                    other.destroy()
                if other.isPersistent():
                    other.undefine()
        dom = hv.conn.lookupByName("test")
        if dom.state()[0] == PAUSED:
            dom.resume()
        elif not dom.isActive():
            dom.create()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The server's app over libvirt's test driver, with a state directory of its own."""
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    return create_app(ServerSettings(uri="test:///default", socket=None))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client of ``app`` through the unix-socket door (the local admin), its start-up and shut-down run."""
    with TestClient(Marked(app, "unix")) as c:
        yield c
