"""`kvmhub serve` as a real process on a private test host, driven over its unix socket as a client would:
a VM created, started, stopped and removed through the API; and the server killed with SIGKILL mid-create,
restarted, with the operation read back rolled back and the host as it was before."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET
from tests.integration.crash import differences, host_state

API = "http://kvmhub/api/v1"
FAULT = "clone-disk"  # inside create, right after it made the VM's disk volume


@dataclass
class Server:
    proc: subprocess.Popen[str]
    client: httpx.Client
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short path: a unix socket's path is limited to 107 bytes."""
    where = Path(tempfile.mkdtemp(prefix="kh-srv-"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


def start_server(host: TestHost, where: Path, env: dict[str, str] | None = None, wait_s: float = 60) -> Server:
    """``kvmhub --connect URI serve --socket SOCK`` with the session's state directory; returns once it answers."""
    sock = where / "kvmhub.sock"
    log = where / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        proc = subprocess.Popen([*KVMHUB, "--connect", host.uri, "serve", "--socket", str(sock)],
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **host.env(), **(env or {})})
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url=API, timeout=60)
    server = Server(proc, client, log)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if client.get("/vms").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"the server did not answer within {wait_s} s:\n{log.read_text()}")


def wait_op(server: Server, answer: httpx.Response, timeout: float = 400) -> dict[str, Any]:
    """The operation a 202 answer started, once it has finished."""
    assert answer.status_code == 202, answer.text
    location = answer.headers["location"].removeprefix("/api/v1")
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = server.client.get(f"{location}/wait", params={"timeout": 30}).json()
        if op["state"] != "running" or time.monotonic() > deadline:
            return op


def read_until(stream: IO[str], marker: str, wait_s: float, log: Path) -> None:
    deadline = time.monotonic() + wait_s
    seen = ""
    while marker not in seen:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        line = stream.readline() if ready else ""
        if not line:
            raise AssertionError(f"the server never printed {marker!r}:\n{seen}\n{log.read_text()}")
        seen += line


def test_a_vm_created_started_stopped_and_removed_through_the_api(prepared_host: TestHost, workdir: Path) -> None:
    before = host_state(prepared_host)
    server = start_server(prepared_host, workdir)
    try:
        body = {"name": "api-vm", "image": "tiny", "network": LAB_NET, "memory": "128M"}
        op = wait_op(server, server.client.post("/vms", json=body))
        assert op["state"] == "succeeded" and op["kind"] == "vm.create", op
        assert op["result"]["name"] == "api-vm" and op["result"]["state"] == "running"
        assert server.client.get("/vms/api-vm").json()["state"] == "running"
        again = server.client.post("/vms", json=body)
        assert again.status_code == 409 and again.json()["code"] == "name.taken"

        op = wait_op(server, server.client.post("/vms/api-vm/stop", json={"force": True, "timeout": 30}))
        assert op["state"] == "succeeded" and op["result"]["state"] == "shut off", op
        op = wait_op(server, server.client.post("/vms/api-vm/start"))
        assert op["state"] == "succeeded" and op["result"]["state"] == "running", op
        op = wait_op(server, server.client.delete("/vms/api-vm"))
        assert op["state"] == "succeeded", op
        assert server.client.get("/vms/api-vm").status_code == 404
    finally:
        server.stop()
    assert differences(before, host_state(prepared_host)) == ""


def test_server_killed_mid_create_reads_rolled_back_after_restart(prepared_host: TestHost, workdir: Path) -> None:
    before = host_state(prepared_host)
    server = start_server(prepared_host, workdir, env={"KVMHUB_INJECT_FAULT": f"hang:{FAULT}"})
    try:
        answer = server.client.post("/vms", json={"name": "k9-api", "image": "tiny", "network": LAB_NET,
                                                  "memory": "128M"})
        assert answer.status_code == 202, answer.text
        op_id = answer.json()["id"]
        assert server.proc.stdout is not None
        read_until(server.proc.stdout, f"fault point {FAULT}: hanging", 180, server.log)
        assert server.client.get(f"/operations/{op_id}").json()["state"] == "running"
    finally:
        server.stop(signal.SIGKILL)
    assert server.proc.returncode == -signal.SIGKILL
    assert host_state(prepared_host) != before  # the kill left the VM's disk for recovery to take back

    server = start_server(prepared_host, workdir)
    try:
        op = server.client.get(f"/operations/{op_id}").json()
        assert op["kind"] == "vm.create" and op["target"] == "k9-api"
        assert op["state"] == "rolled-back", op
        assert op["error"]["message"].startswith("interrupted: its process"), op["error"]
        assert op["result"] is None
        assert op["steps"] and all(step["state"] == "undone" for step in op["steps"]), op["steps"]
        assert server.client.get("/vms/k9-api").status_code == 404
        assert all(o["state"] != "running" for o in server.client.get("/operations").json())
    finally:
        server.stop()
    assert "recovered interrupted operation" in server.log.read_text()
    assert differences(before, host_state(prepared_host)) == ""


def test_the_cli_through_the_server_says_what_it_says_alone(prepared_host: TestHost, workdir: Path) -> None:
    """`kvmhub --remote unix:SOCK` creates, lists, shows and removes a VM with the output and exit codes of
    library mode, the create's phases coming from the server's operation."""
    before = host_state(prepared_host)
    server = start_server(prepared_host, workdir)
    remote = ["--remote", f"unix:{workdir / 'kvmhub.sock'}"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in {**os.environ, **prepared_host.env()}.items() if k != "KVMHUB_URI"}
        return subprocess.run([*KVMHUB, *args], capture_output=True, text=True, env=env, timeout=400, check=False)

    local = ["--connect", prepared_host.uri, "--local"]
    try:
        made = cli(*remote, "create", "cli-vm", "--image", "tiny", "--network", LAB_NET, "--memory", "128M",
                   "--wait", "--timeout", "300")
        assert made.returncode == 0, made.stderr
        assert "VM cli-vm created and started" in made.stderr
        assert "create cli-vm: " in made.stderr  # phases drawn from the server's operation
        for args in (["ls", "--json"], ["show", "cli-vm", "--json"]):
            through, alone = cli(*remote, *args), cli(*local, *args)
            assert through.returncode == alone.returncode == 0, through.stderr
            assert through.stdout == alone.stdout
        for args, code in ((["show", "nope"], 3), (["start", "cli-vm"], 4)):
            through, alone = cli(*remote, *args), cli(*local, *args)
            assert through.returncode == alone.returncode == code, (through.stderr, alone.stderr)
            assert through.stderr.splitlines()[0] == alone.stderr.splitlines()[0]
        gone = cli(*remote, "rm", "cli-vm")
        assert gone.returncode == 0 and "VM cli-vm removed" in gone.stderr, gone.stderr
        # the journal is the host's: the library-mode commands' operations are in it too, asked for by nobody
        ops = [o for o in server.client.get("/operations").json() if o["requested_by"] == "local"]
        assert [(o["kind"], o["state"]) for o in ops[:4]] == [
            ("vm.rm", "succeeded"), ("vm.start", "failed"), ("vm.wait", "succeeded"), ("vm.create", "succeeded")]
    finally:
        server.stop()
    assert differences(before, host_state(prepared_host)) == ""
