"""Unit-test options and fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.hv import Hypervisor
from kvmhub.models import VMSpec
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from kvmhub.xml.domain import domain_from_xml

PAUSED = 3  # libvirt's VIR_DOMAIN_PAUSED


@pytest.fixture
def regenerate_output(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files."""
    return bool(request.config.getoption("--regenerate-output", default=False))


_PRISTINE: list[Any] = []  # the test VM's definition, inactive and as it runs, before any test changed it
_PRISTINE_AUTOSTART: list[bool] = []  # and whether it started with the host


def _definition(dom: Any) -> tuple[str, VMSpec]:
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), domain_from_xml(dom.XMLDesc(0))


@pytest.fixture(autouse=True)
def test_driver_vm_left_running() -> Iterator[None]:
    """libvirt's test driver keeps its state for the whole process: after each test, its VM "test" is running
    again with its first definition and autostart setting, and the VMs a test defined are gone, as the tests
    after it expect."""
    if not _PRISTINE:
        with Hypervisor("test:///default") as hv:
            _PRISTINE.extend(_definition(hv.conn.lookupByName("test")))
            _PRISTINE_AUTOSTART.append(bool(hv.conn.lookupByName("test").autostart()))
    yield
    with Hypervisor("test:///default") as hv:
        for other in hv.conn.listAllDomains():
            if other.name() != "test":  # a VM a test defined: gone, as in a fresh test driver
                if other.isActive():
                    other.destroy()
                if other.isPersistent():
                    other.undefine()
        dom = hv.conn.lookupByName("test")
        if _definition(dom) != tuple(_PRISTINE):  # a test changed it (vCPUs, metadata...): its first one again
            if dom.isActive():
                dom.destroy()
            hv.conn.defineXML(_PRISTINE[0])
            dom = hv.conn.lookupByName("test")
        if bool(dom.autostart()) != _PRISTINE_AUTOSTART[0]:
            dom.setAutostart(int(_PRISTINE_AUTOSTART[0]))
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
