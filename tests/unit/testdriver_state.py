"""libvirt's ``test:///default`` driver keeps its state for the whole test process: what a test adds to it
(volumes, networks, pools) is taken away again so the tests after it see the driver as it starts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kvmhub.hv import Hypervisor
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked

URI = "test:///default"


@contextmanager
def left_as_found() -> Iterator[None]:
    """Remove the volumes, networks and pools made inside, and start what was stopped inside (VMs excepted)."""
    with Hypervisor(URI) as hv:
        conn = hv.conn
        pools = {p.name(): {v.name() for v in p.listAllVolumes()} if p.isActive() else set()
                 for p in conn.listAllStoragePools()}
        nets = {n.name(): (n.isActive(), n.autostart()) for n in conn.listAllNetworks()}
    yield
    with Hypervisor(URI) as hv:
        conn = hv.conn
        for pool in conn.listAllStoragePools():
            if pool.name() not in pools:
                if pool.isActive():
                    pool.destroy()
                pool.undefine()
                continue
            if not pool.isActive():
                pool.create()
            for vol in pool.listAllVolumes():
                if vol.name() not in pools[pool.name()]:
                    vol.delete()
        for net in conn.listAllNetworks():
            if net.name() not in nets:
                if net.isActive():
                    net.destroy()
                net.undefine()
                continue
            active, autostart = nets[net.name()]
            if active and not net.isActive():
                net.create()
            if net.autostart() != autostart:
                net.setAutostart(autostart)


@contextmanager
def api_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app over the test driver, reached as the local admin on the unix socket."""
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    with left_as_found(), TestClient(Marked(create_app(ServerSettings(uri=URI, socket=None)), "unix")) as c:
        yield c
