"""The server's WebSockets against a real guest on a private test host: an operation's progress and the
lifecycle events it causes (naming who asked), the serial console both ways, and the VNC display through a
single-use token (the RFB greeting arrives; the token's second use is refused; a VNC password still applies).

The server runs in-process under uvicorn on a temporary unix socket (the local door). The module shares one tiny
VM with a VNC display; ``running`` puts it back in the running state whatever the test before left.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, unix_connect

from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from kvmhub.testing import TestHost
from kvmhub.xml._util import parse, serialize
from tests.integration.conftest import Runner, tiny_vm


@dataclass
class Server:
    socket: Path
    http: httpx.Client

    def ws(self, path: str, **kwargs: Any) -> ClientConnection:
        conn: ClientConnection = unix_connect(str(self.socket), f"ws://kvmhub{path}", open_timeout=30, **kwargs)
        return conn


@pytest.fixture(scope="module")
def vnc_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """A tiny VM with a VNC display on loopback, booted; removed after the module."""
    name = "vm-server-streams"
    with tiny_vm(kvmhub, name, "--vnc"):
        yield name


@pytest.fixture(scope="module")
def server(prepared_host: TestHost, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server")
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**prepared_host.env(), "KVMHUB_STATE_DIR": str(base / "state")}.items():
            env.setenv(key, value)
        socket = base / "kvmhub.sock"
        app = Marked(create_app(ServerSettings(uri=prepared_host.uri, socket=None)), "unix")
        uv = uvicorn.Server(uvicorn.Config(app, uds=str(socket), log_level="warning", ws="websockets-sansio"))
        thread = threading.Thread(target=uv.run, name="test-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://kvmhub",
                          timeout=60) as http:
            try:
                yield Server(socket, http)
            finally:
                uv.should_exit = True
                thread.join(30)


def _state(server: Server, name: str) -> str:
    answer = server.http.get(f"/api/v1/vms/{name}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["state"])


def _finish(server: Server, name: str, action: str, **body: Any) -> dict[str, Any]:
    started = server.http.post(f"/api/v1/vms/{name}/{action}", json=body or None)
    assert started.status_code == 202, started.text
    done: dict[str, Any] = server.http.get(f"/api/v1/operations/{started.json()['id']}/wait",
                                           params={"timeout": 180}).json()
    assert done["state"] == "succeeded", done
    return done


@pytest.fixture
def running(server: Server, vnc_vm: str) -> str:
    if _state(server, vnc_vm) != "running":
        _finish(server, vnc_vm, "start")
    return vnc_vm


def _events_until(ws: ClientConnection, done: Any, timeout: float = 180) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not events or not done(events[-1]):
        assert time.monotonic() < deadline, f"not seen within {timeout} s; got {events}"
        events.append(json.loads(ws.recv(timeout=deadline - time.monotonic())))
    return events


def test_progress_and_lifecycle_events_name_who_asked(server: Server, running: str) -> None:
    with server.ws(f"/api/v1/events?vm={running}") as ws:
        # ACPI and a 1 s grace: a guest under TCG takes longer, so the stop reports its kill phase while it runs
        stop = server.http.post(f"/api/v1/vms/{running}/stop", json={"force": True, "timeout": 1}).json()
        stopped = _events_until(ws, lambda e: e["type"] == "lifecycle" and e["data"]["event"] == "stopped")
        start = server.http.post(f"/api/v1/vms/{running}/start").json()
        started = _events_until(ws, lambda e: e["type"] == "lifecycle" and e["data"]["event"] == "started")
    progress = [e for e in stopped if e["type"] == "operation" and e["operation"] == stop["id"]]
    assert progress and all(e["requested_by"] == "local" and e["vm"] == running for e in progress), stopped
    assert {e["data"]["kind"] for e in progress} == {"vm.stop"}
    assert "no shutdown after 1 s: killing" in json.dumps(progress[0]["data"]["event"]), progress
    assert (stopped[-1]["operation"], stopped[-1]["requested_by"]) == (stop["id"], "local")
    assert (started[-1]["operation"], started[-1]["requested_by"]) == (start["id"], "local")
    seqs = [e["seq"] for e in stopped + started]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_serial_console_both_ways(server: Server, running: str) -> None:
    seen = b""
    with server.ws(f"/api/v1/vms/{running}/console") as ws:
        deadline = time.monotonic() + 120
        while b"console-42" not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            ws.send(b"\recho console-$((40+2))\r")
            try:
                while b"console-42" not in seen:
                    chunk = ws.recv(timeout=3)
                    seen += chunk if isinstance(chunk, bytes) else chunk.encode()
            except TimeoutError:
                continue
    # once closed, the console is free for the next session
    with server.ws(f"/api/v1/vms/{running}/console") as again:
        again.send(b"\r")


def _rfb_security_types(ws: ClientConnection) -> tuple[bytes, list[int]]:
    greeting = ws.recv(timeout=30)
    assert isinstance(greeting, bytes)
    ws.send(greeting[:12])  # the client answers with the version it speaks: the server's own
    reply = ws.recv(timeout=30)
    assert isinstance(reply, bytes)
    return greeting, list(reply[1 : 1 + reply[0]])


def test_vnc_through_a_token_once(server: Server, running: str) -> None:
    token = server.http.post(f"/api/v1/vms/{running}/vnc-token")
    assert token.status_code == 200, token.text
    path = token.json()["path"]
    with server.ws(path, subprotocols=["binary"]) as ws:
        greeting, security = _rfb_security_types(ws)
    assert greeting.startswith(b"RFB 003.") and security == [1]  # 1: no authentication
    with pytest.raises(InvalidStatus) as refused:
        server.ws(path)
    assert refused.value.response.status_code == 401
    assert b"already used" in refused.value.response.body


def _set_vnc_password(libvirt_conn: Any, name: str, password: str | None) -> None:
    """Define the (stopped) VM's display with ``password`` (None: without one); QEMU takes it at start."""
    root = parse(libvirt_conn.lookupByName(name).XMLDesc(1 | 2), "domain")  # secure | inactive: with passwd
    graphics = root.find("devices/graphics[@type='vnc']")
    assert graphics is not None
    if password is None and "passwd" in graphics.attrib:
        del graphics.attrib["passwd"]
    elif password is not None:
        graphics.set("passwd", password)
    libvirt_conn.defineXML(serialize(root))


def test_vnc_with_a_password_leaves_the_vnc_authentication_to_the_client(
    server: Server, running: str, libvirt_conn: Any
) -> None:
    _finish(server, running, "kill")
    _set_vnc_password(libvirt_conn, running, "s3cret")
    try:
        _finish(server, running, "start")
        path = server.http.post(f"/api/v1/vms/{running}/vnc-token").json()["path"]
        with server.ws(path) as ws:
            greeting, security = _rfb_security_types(ws)
        assert greeting.startswith(b"RFB 003.") and security == [2]  # 2: VNC authentication
    finally:
        _finish(server, running, "kill")
        _set_vnc_password(libvirt_conn, running, None)


def test_the_serial_console_closes_cleanly_when_the_vm_stops(server: Server, running: str) -> None:
    with server.ws(f"/api/v1/vms/{running}/console") as ws:
        _finish(server, running, "kill")
        deadline = time.monotonic() + 30
        with pytest.raises(ConnectionClosedOK) as closed:
            while time.monotonic() < deadline:
                ws.recv(timeout=deadline - time.monotonic())
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert closed.value.rcvd.reason == f"the console of {running} ended"
