"""`kvmhub serve` on a private test host when things go wrong under it: libvirtd stalled (SIGSTOP) or killed
while requests are in flight answers 503 with a code and a cause naming libvirtd, within the call timeout, and the
same server answers again once libvirtd is back, its event feed too; an image import cancelled through the API
leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from lxml import etree
from websockets.sync.client import unix_connect

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, run_kvmhub
from tests.integration.test_server import API, Server

CALL_TIMEOUT = 4  # the server's --timeout: what one libvirt call may take
UNAVAILABLE = {"libvirt.timeout", "host.libvirtd_unreachable"}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short path: a unix socket's path is limited to 107 bytes."""
    where = Path(tempfile.mkdtemp(prefix="kh-fail-"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


def serve(host: TestHost, where: Path) -> Server:
    """``kvmhub --connect URI --timeout 4 serve --socket SOCK``; returns once it answers."""
    sock = where / "kvmhub.sock"
    log = where / "server.log"
    (where / "tmp").mkdir(exist_ok=True)
    with log.open("w") as err:
        proc = subprocess.Popen([*KVMHUB, "--connect", host.uri, "--timeout", str(CALL_TIMEOUT), "serve",
                                 "--socket", str(sock)], stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **host.env(), "KVMHUB_STATE_DIR": str(where / "state"),
                                     "KVMHUB_ACCEL": "tcg", "TMPDIR": str(where / "tmp")})
    server = Server(proc, httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url=API, timeout=120), log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log.read_text()}"
        try:
            if server.client.get("/vms").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"the server did not answer within 60 s:\n{log.read_text()}")


def _define(host: TestHost, name: str) -> None:
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    etree.SubElement(etree.SubElement(dom, "os"), "type", arch="x86_64").text = "hvm"
    conn = host.connect()
    try:
        conn.defineXML(etree.tostring(dom, encoding="unicode"))
    finally:
        conn.close()


def _libvirtd(host: TestHost) -> int:
    return int((host.dir / "run" / "libvirtd.pid").read_text())


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"libvirtd {pid} did not exit")


def _timed(server: Server, request: str) -> tuple[float, httpx.Response]:
    method, path = request.split(" ", 1)
    began = time.monotonic()
    answer = server.client.request(method, path)
    return time.monotonic() - began, answer


def _all_at_once(server: Server, paths: list[str]) -> list[tuple[float, httpx.Response]]:
    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(lambda p: _timed(server, p), paths))


def _back_within(server: Server, seconds: float, names: list[str]) -> None:
    deadline = time.monotonic() + seconds
    while True:
        answer = server.client.get("/vms")
        if answer.status_code == 200:
            assert sorted(v["name"] for v in answer.json()) == names
            return
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, f"the server still answers {answer.text}"
        time.sleep(0.5)


def _unavailable(answers: list[tuple[float, httpx.Response]], within: float) -> None:
    for took, answer in answers:
        assert answer.status_code == 503, (answer.request.url.path, answer.json())
        body = answer.json()
        assert body["code"] in UNAVAILABLE and body["kind"] in {"OperationTimeout", "HostProblem"}, body
        assert "libvirtd" in f"{body['cause']} {body['hint']}", body
        assert took < within, f"{answer.request.url.path} answered after {took:.1f} s"


def _kept_or_unavailable(answers: list[tuple[float, httpx.Response]]) -> None:
    """Takes GET /vms's answer out of a batch sent as the daemon stalled: until a call finds it stalled, the
    listing the server kept from just before may still be answered (after that, 503 like the rest)."""
    _took, listed = answers.pop(0)
    assert listed.status_code == 503 or [v["name"] for v in listed.json()] == ["fail-a"], listed.text


def _act(server: Server, action: str) -> None:
    started = server.client.post(f"/vms/fail-a/{action}")  # nothing of the failed calls holds the VM
    assert started.status_code == 202, started.text
    done = server.client.get(f"/operations/{started.json()['id']}/wait", params={"timeout": 60}).json()
    assert done["state"] == "succeeded", done


def _lifecycle_events_flow_again(server: Server, sock: Path) -> None:
    """The server's libvirt event feed subscribes again by itself: a start or kill shows on /events."""
    deadline = time.monotonic() + 90
    with unix_connect(str(sock), "ws://kvmhub/api/v1/events?vm=fail-a", open_timeout=30) as ws:
        while True:
            assert time.monotonic() < deadline, "no lifecycle event since libvirtd came back"
            running = server.client.get("/vms/fail-a").json()["state"] == "running"
            _act(server, "kill" if running else "start")
            try:
                while True:
                    event = json.loads(ws.recv(timeout=10))
                    if event["type"] == "lifecycle" and event["data"]["event"] == ("stopped" if running else "started"):
                        return
            except TimeoutError:
                continue  # the feed was not subscribed yet when the VM changed


PATHS = ["GET /vms", "GET /vms/fail-a", "GET /hosts", "GET /networks", "GET /pools", "POST /vms/fail-a/start",
         "GET /operations"]


def test_libvirtd_stalled_then_killed_answers_503_and_the_server_recovers(
        host_factory: Callable[..., TestHost], workdir: Path) -> None:
    host = host_factory()
    _define(host, "fail-a")
    server = serve(host, workdir)
    pid = _libvirtd(host)
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            answers = _all_at_once(server, PATHS)
            again = _all_at_once(server, PATHS[:-1])  # after a timeout the connection is opened anew: bounded too
        finally:
            os.kill(pid, signal.SIGCONT)
        # the operations journal is the server's own: it answers without libvirt
        assert answers.pop()[1].status_code == 200
        _kept_or_unavailable(answers)
        _unavailable(answers, within=CALL_TIMEOUT * 2)
        _unavailable(again, within=CALL_TIMEOUT * 2)
        _back_within(server, 60, ["fail-a"])

        # killed while calls wait on it: those in flight and those after answer 503 at once
        os.kill(pid, signal.SIGSTOP)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(_all_at_once, server, PATHS[:-1])
            time.sleep(1)
            os.kill(pid, signal.SIGKILL)
            answers = in_flight.result()
        _kept_or_unavailable(answers)
        _unavailable(answers, within=CALL_TIMEOUT * 2)
        _unavailable(_all_at_once(server, PATHS[:-1]), within=CALL_TIMEOUT)  # the listing too, now

        _gone(pid)
        host.run(["libvirtd", "-d", "-p", str(host.dir / "run" / "libvirtd.pid")])
        _back_within(server, 60, ["fail-a"])
        assert server.client.get("/vms/fail-a").json()["state"] == "shut off"
        _lifecycle_events_flow_again(server, workdir / "kvmhub.sock")
        assert server.proc.poll() is None  # the same server throughout
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


def _volumes(server: Server) -> dict[str, list[str]]:
    return {p["name"]: sorted(v["name"] for v in server.client.get(f"/pools/{p['name']}/volumes").json())
            for p in server.client.get("/pools").json()}


def _random_raw(path: Path, mib: int) -> None:
    with path.open("wb") as out:  # random bytes: qemu-img cannot skip them as zeros, so converting takes a while
        for _ in range(mib // 8):
            out.write(os.urandom(8 << 20))


def test_an_image_import_cancelled_through_the_api_leaves_nothing(
        host_factory: Callable[..., TestHost], workdir: Path) -> None:
    host = host_factory()
    made = run_kvmhub(host, "host", "setup", "--no-network")
    assert made.code == 0, made.err + made.out
    source = workdir / "big.raw"
    _random_raw(source, 512)
    server = serve(host, workdir)
    try:
        before = (_volumes(server), server.client.get("/images").json(), server.client.get("/vms").json())
        started = server.client.post("/images", json={"name": "big", "media": {"path": str(source)},
                                                      "format": "raw"})
        assert started.status_code == 202, started.text
        op_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            op = server.client.get(f"/operations/{op_id}").json()
            assert op["state"] == "running" and time.monotonic() < deadline, op
            if any("delete volume" in step["description"] for step in op["steps"]):
                break  # the image's volume is being written
            time.sleep(0.05)
        cancel = server.client.delete(f"/operations/{op_id}")
        assert cancel.status_code == 202, cancel.text
        op = server.client.get(f"/operations/{op_id}/wait", params={"timeout": 120}).json()
        assert op["state"] == "cancelled", op
        assert op["error"]["code"] == "op.cancelled", op["error"]
        assert op["steps"] and all(step["state"] == "undone" for step in op["steps"]), op["steps"]
        assert server.client.get("/images/big").status_code == 404
        after = (_volumes(server), server.client.get("/images").json(), server.client.get("/vms").json())
        assert after == before
        assert list((workdir / "tmp").iterdir()) == []  # no temporary copy either
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()
