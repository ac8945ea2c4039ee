"""`kvmhub exec` and `kvmhub cp` without a guest: the agent's errors, the refusals of bad input, the output
streamed from files that grow (over a stand-in agent), and the API's answers over libvirt's test driver."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound, OperationTimeout
from kvmhub.hv.agent import Agent, ExecStatus, GuestError
from kvmhub.models.guest import ExecRequest
from kvmhub.services.vm import guest_exec, guest_files

API = "/api/v1"


class _Dom:
    """A domain whose agent answers with what a test gives it (or raises it)."""

    name = "vm1"

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[dict[str, Any]] = []

    def agent_command(self, command: dict[str, Any], timeout: int = 5) -> Any:
        self.sent.append(command)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _agent(answer: Any) -> Agent:
    return Agent(_Dom(answer))  # type: ignore[arg-type]


def test_agent_failures_become_errors_naming_the_cause_and_the_fix() -> None:
    not_connected = KvmhubError("x", original="Guest agent is not responding: QEMU guest agent is not connected")
    with pytest.raises(Conflict) as down:
        _agent(not_connected).ping()
    assert down.value.code == "vm.agent_unresponsive" and "still booting" in str(down.value)
    assert "`kvmhub ip vm1 --wait`" in str(down.value)

    unconfigured = KvmhubError("x", original="argument unsupported: QEMU guest agent is not configured")
    with pytest.raises(Conflict) as missing:
        _agent(unconfigured).ping()
    assert missing.value.code == "vm.no_agent" and "org.qemu.guest_agent.0" in str(missing.value)

    no_program = KvmhubError("x", original="internal error: unable to execute QEMU agent command 'guest-exec': "
                                           "Failed to execute child process “frob” (No such file or directory)")
    with pytest.raises(NotFound) as lacking:
        _agent(no_program).exec(["frob"])
    assert lacking.value.code == "guest.not_found" and "no program 'frob' in VM vm1" in str(lacking.value)

    refused = KvmhubError("x", original="internal error: unable to execute QEMU agent command 'guest-file-open': "
                                        "failed to open file '/nope' (mode: 'r'): No such file or directory")
    with pytest.raises(GuestError) as open_failed:
        _agent(refused).file_open("/nope", "r")
    assert "No such file or directory" in open_failed.value.guest_message


def test_exec_sends_argv_env_and_stdin_as_the_agent_takes_them() -> None:
    dom = _Dom({"pid": 42})
    assert Agent(dom).exec(["ls", "-l"], env=["A=1"], stdin=b"hi") == 42  # type: ignore[arg-type]
    assert dom.sent == [{"execute": "guest-exec", "arguments": {
        "path": "ls", "arg": ["-l"], "capture-output": True, "env": ["A=1"], "input-data": "aGk="}}]


def test_a_signal_reads_as_a_shell_gives_it() -> None:
    assert ExecStatus(True, exit_code=3).shell_code == 3
    assert ExecStatus(True, signal=9).shell_code == 137


def test_an_environment_keeps_a_usual_path_unless_given_one() -> None:
    assert guest_exec.environment([]) is None
    assert guest_exec.environment(["A=1"]) == [guest_exec.DEFAULT_PATH, "A=1"]
    assert guest_exec.environment(["PATH=/x", "A=1"]) == ["PATH=/x", "A=1"]


@pytest.mark.parametrize("fields, says", [
    ({"argv": []}, "at least 1"),
    ({"argv": [""]}, "the program (argv[0]) is empty"),
    ({"argv": ["ls"], "env": ["1A=b"]}, "is not KEY=VALUE"),
    ({"argv": ["ls"], "env": ["NOEQUALS"]}, "is not KEY=VALUE"),
    ({"argv": ["ls"], "timeout": 0}, "greater than 0"),
    ({"argv": ["ls"], "stdin": "A" * (800 * 1024)}, "stdin is over 512 KiB"),
])
def test_bad_exec_requests_are_refused(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ExecRequest.model_validate(fields)


@pytest.mark.parametrize("path", ["relative/file", "/a/../etc/passwd", "/tmp/", "/tmp/a\0b"])
def test_guest_paths_kvmhub_refuses(path: str) -> None:
    with pytest.raises(InvalidInput):
        guest_files.check_path(path)


def test_stdin_that_is_not_base64_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid base64"):
        guest_exec.decode_stdin("not base64!")


@dataclass
class _Guest:
    """A stand-in agent whose command writes its output in steps, one per status poll, then exits."""

    steps: list[tuple[bytes, bytes]]
    exit_code: int = 0
    never_ends: bool = False
    files: dict[str, bytearray] = field(default_factory=dict)
    handles: dict[int, list[Any]] = field(default_factory=dict)
    started: list[list[str]] = field(default_factory=list)
    name: str = "vm1"

    def exec(self, argv: list[str], *, env: list[str] | None = None, stdin: bytes | None = None,
             capture: bool = True) -> int:
        self.started.append(argv)
        if argv[0] == guest_exec.SHELL and "kvmhub-exec" in argv:
            private = argv[argv.index("kvmhub-exec") + 1]
            self.files[f"{private}/out"], self.files[f"{private}/err"] = bytearray(), bytearray()
            self.private = private
        return len(self.started)

    def exec_status(self, pid: int) -> ExecStatus:
        if pid != 1:
            return ExecStatus(True, exit_code=0)
        if self.steps:
            out, err = self.steps.pop(0)
            self.files[f"{self.private}/out"] += out
            self.files[f"{self.private}/err"] += err
            return ExecStatus(False)
        return ExecStatus(False) if self.never_ends else ExecStatus(True, exit_code=self.exit_code)

    def file_open(self, path: str, mode: str) -> int:
        self.handles[len(self.handles) + 1] = [path, 0]
        return len(self.handles)

    def file_read(self, handle: int, count: int = 1) -> tuple[bytes, bool]:
        path, at = self.handles[handle]
        data = bytes(self.files[path][at:at + 4])  # small reads: several per poll
        self.handles[handle][1] = at + len(data)
        return data, at + len(data) >= len(self.files[path])

    def file_write(self, handle: int, data: bytes) -> int:
        self.files.setdefault(self.handles[handle][0], bytearray()).extend(data)
        return len(data)

    def file_seek(self, handle: int, offset: int, whence: str = "set") -> int:
        return int(self.handles[handle][1])

    def file_close(self, handle: int) -> None:
        self.handles.pop(handle)


def _run(monkeypatch: pytest.MonkeyPatch, guest: _Guest, req: ExecRequest) -> tuple[list[bytes], list[bytes], int]:
    monkeypatch.setattr(guest_exec, "agent", lambda _hv, _name: guest)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    outs: list[bytes] = []
    errs: list[bytes] = []
    result = guest_exec.run(None, "vm1", req, out=outs.append, err=errs.append)  # type: ignore[arg-type]
    return outs, errs, result.exit_code


def test_output_is_delivered_as_the_command_writes_it_and_the_guest_files_are_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([(b"first line\n", b""), (b"", b"a warning\n"), (b"second line\n", b"")], exit_code=3)
    outs, errs, code = _run(monkeypatch, guest, ExecRequest(argv=["prog", "arg"]))
    assert code == 3
    assert b"".join(outs) == b"first line\nsecond line\n" and b"".join(errs) == b"a warning\n"
    assert len(outs) >= 3  # in pieces, as they came
    assert guest.started[0][-2:] == ["prog", "arg"]
    assert guest.started[-1] == ["rm", "-rf", "--", guest.private] and not guest.handles


def test_a_command_past_its_timeout_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([(b"started\n", b"")], never_ends=True)
    clock = iter(range(0, 10_000, 5))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(OperationTimeout, match="prog did not finish within 7 s in VM vm1: it was killed"):
        _run(monkeypatch, guest, ExecRequest(argv=["prog"], timeout=7))
    assert [guest.started[1][0], guest.started[1][-1]] == [guest_exec.SHELL, "1"]  # kill -9 of the command


def test_the_api_answers_a_vm_without_agent_409_with_the_fix(client: TestClient) -> None:
    answer = client.post(f"{API}/vms/test/exec", json={"argv": ["true"]})
    assert answer.status_code == 409 and answer.json()["code"] == "vm.no_agent"
    assert "org.qemu.guest_agent.0" in answer.json()["hint"]
    assert client.get(f"{API}/vms/test/files", params={"path": "/etc/hostname"}).json()["code"] == "vm.no_agent"
    missing = client.post(f"{API}/vms/nobody/exec", json={"argv": ["true"]})
    assert missing.status_code == 404 and missing.json()["code"] == "vm.not_found"


def test_the_api_refuses_bad_requests_4xx(client: TestClient) -> None:
    assert client.post(f"{API}/vms/test/exec", json={"argv": []}).status_code == 422
    assert client.post(f"{API}/vms/test/exec", json={"argv": ["ls"], "stdin": "%%%"}).status_code == 400
    relative = client.put(f"{API}/vms/test/files", params={"path": "etc/x"}, content=b"abc")
    assert relative.status_code == 400 and "not an absolute path" in relative.json()["error"]
    assert client.put(f"{API}/vms/test/files", params={"path": "/x", "mode": "999"}, content=b"a").status_code == 422
    assert client.get(f"{API}/vms/test/files").status_code == 422
    killing = client.post(f"{API}/vms/test/kill")
    assert client.get(f"{killing.headers['Location']}/wait").json()["state"] == "succeeded"
    stopped = client.post(f"{API}/vms/test/exec", json={"argv": ["true"]})
    assert stopped.status_code == 409 and stopped.json()["code"] == "vm.wrong_state"


def test_a_pull_reads_the_file_in_chunks_with_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([])
    guest.files["/data"] = bytearray(b"0123456789")
    monkeypatch.setattr(guest_files, "agent", lambda _hv, _name: guest)
    monkeypatch.setattr(guest_files, "run_shell", lambda _ag, _script, *_args: ExecStatus(
        True, exit_code=0, out=b"10 640\n"))
    seen: list[tuple[int, int]] = []

    class Report:
        def bytes(self, _what: str, done: int, total: int) -> None:
            seen.append((done, total))

    dst = io.BytesIO()
    info = guest_files.pull(None, "vm1", "/data", dst, report=Report())  # type: ignore[arg-type]
    assert dst.getvalue() == b"0123456789" and (info.size, info.mode) == (10, 0o640)
    assert seen[0] == (0, 10) and seen[-1] == (10, 10) and len(seen) > 2 and not guest.handles


def _stdin_recorded(guest: _Guest) -> list[bytes | None]:
    """The stdin each guest-exec of ``guest`` is given, from now on."""
    sent: list[bytes | None] = []
    real_exec = guest.exec

    def exec_(argv: list[str], **kw: Any) -> int:
        sent.append(kw.get("stdin"))
        return real_exec(argv, **kw)

    guest.exec = exec_  # type: ignore[method-assign]
    return sent


def test_stdin_reaches_the_agent_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([])
    sent = _stdin_recorded(guest)
    _run(monkeypatch, guest, ExecRequest(argv=["cat"], stdin=base64.b64encode(b"input\n").decode()))
    assert sent[0] == b"input\n"


def test_stdin_too_big_for_one_request_goes_through_a_guest_file(monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([])
    sent = _stdin_recorded(guest)
    data = bytes(range(256)) * 1024
    _run(monkeypatch, guest, ExecRequest(argv=["wc", "-c"], stdin=base64.b64encode(data).decode()))
    stdin_file = f"{guest.private}.in"
    assert sent[0] is None and guest.started[0][-3:] == [stdin_file, "wc", "-c"]
    assert guest.files[stdin_file] == data
    assert guest.started[-1] == ["rm", "-rf", "--", guest.private, stdin_file]


def test_the_exec_websocket_streams_output_then_the_exit_code(client: TestClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([(b"one\n", b""), (b"", b"two\n"), (b"three\n", b"")], exit_code=4)
    monkeypatch.setattr(guest_exec, "agent", lambda _hv, _name: guest)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    with client.websocket_connect(f"{API}/vms/test/exec") as ws:
        ws.send_text('{"argv": ["prog"]}')
        got: list[bytes] = []
        while (message := ws.receive()).get("bytes") is not None:
            got.append(message["bytes"])
    assert b"".join(m[1:] for m in got if m[0] == 1) == b"one\nthree\n"
    assert b"".join(m[1:] for m in got if m[0] == 2) == b"two\n"
    assert len(got) > 3 and got[0][0] == 1 and got[-1][0] == 1  # in pieces, in the order they were written
    assert json.loads(message["text"]) == {"exit_code": 4, "signal": None}


def test_the_exec_websocket_answers_refusals_with_the_error_body(client: TestClient) -> None:
    with client.websocket_connect(f"{API}/vms/test/exec") as ws:
        ws.send_text('{"argv": ["true"]}')
        final = ws.receive_json()
    assert final["status"] == 409 and final["error"]["code"] == "vm.no_agent"
    with client.websocket_connect(f"{API}/vms/test/exec") as ws:
        ws.send_text('{"argv": []}')
        final = ws.receive_json()
    assert final["status"] == 400 and final["error"]["error"].startswith("argv: List should have at least 1 item")


def test_a_client_leaving_the_exec_websocket_has_the_command_killed(client: TestClient,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    guest = _Guest([(b"working\n", b"")], never_ends=True)
    killed = threading.Event()
    real_exec = guest.exec

    def exec_(argv: list[str], **kw: Any) -> int:
        if argv[-1] == "1" and "kill" in " ".join(argv):
            killed.set()
        return real_exec(argv, **kw)

    guest.exec = exec_  # type: ignore[method-assign]
    monkeypatch.setattr(guest_exec, "agent", lambda _hv, _name: guest)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    with client.websocket_connect(f"{API}/vms/test/exec") as ws:
        ws.send_text('{"argv": ["prog"]}')
        assert ws.receive_bytes()[:1] == b"\x01"
    assert killed.wait(10), guest.started


class _Reconnecting:
    """A domain whose agent libvirt is not connected to for the first ``refusals`` calls, then answers."""

    name = "vm1"

    def __init__(self, refusals: int, error: str = "Guest agent is not responding: QEMU guest agent is not connected"
                 ) -> None:
        self.refusals = refusals
        self.error = error
        self.calls: list[str] = []

    def agent_command(self, command: dict[str, Any], timeout: int = 5) -> Any:
        self.calls.append(command["execute"])
        if self.refusals:
            self.refusals -= 1
            raise KvmhubError("libvirt refused", original=self.error, code="vm.agent_unresponsive")
        if command["execute"] == "guest-exec":
            return {"pid": 7}
        return {"exited": True, "exitcode": 0, "out-data": base64.b64encode(b"done").decode()}


def test_a_shell_waits_for_the_agent_libvirt_is_not_yet_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    dom = _Reconnecting(refusals=3)
    status = guest_exec.run_shell(Agent(dom), "echo done", agent_wait=30.0)  # type: ignore[arg-type]
    assert status is not None and status.out == b"done"
    assert dom.calls == ["guest-exec"] * 4 + ["guest-exec-status"]


def test_a_shell_gives_up_on_the_agent_after_its_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    dom = _Reconnecting(refusals=100)
    with pytest.raises(Conflict, match="the guest agent of VM vm1 does not answer"):
        guest_exec.run_shell(Agent(dom), "true", agent_wait=30.0)  # type: ignore[arg-type]
    assert 2 <= len(dom.calls) <= 5


@pytest.mark.parametrize("wait", [0.0, 30.0])
def test_an_agent_that_got_the_call_and_did_not_answer_is_not_asked_again(monkeypatch: pytest.MonkeyPatch,
                                                                           wait: float) -> None:
    # the guest may have started the command: starting it twice could run a script twice
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    dom = _Reconnecting(refusals=1, error="Guest agent is not responding: Guest agent not available for now")
    with pytest.raises(Conflict, match="does not answer"):
        guest_exec.run_shell(Agent(dom), "true", agent_wait=wait)  # type: ignore[arg-type]
    assert dom.calls == ["guest-exec"]


def test_without_a_wait_a_shell_does_not_wait_for_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    dom = _Reconnecting(refusals=1)
    with pytest.raises(Conflict, match="does not answer"):
        guest_exec.run_shell(Agent(dom), "true")  # type: ignore[arg-type]
    assert dom.calls == ["guest-exec"]


def test_started_runs_once_the_script_runs_before_its_end_is_awaited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    dom = _Reconnecting(refusals=2)
    seen: list[list[str]] = []
    status = guest_exec.run_shell(Agent(dom), "echo done", agent_wait=30.0,  # type: ignore[arg-type]
                                  started=lambda: seen.append(list(dom.calls)))
    assert status is not None and status.out == b"done"
    assert seen == [["guest-exec"] * 3]  # after the start that reached the guest, before any status


def test_a_failing_started_kills_the_script_and_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    dom = _Reconnecting(refusals=0)
    sent: list[dict[str, Any]] = []
    real = dom.agent_command

    def record(command: dict[str, Any], timeout: int = 5) -> Any:
        sent.append(command)
        return real(command, timeout)

    dom.agent_command = record  # type: ignore[method-assign]

    def plug() -> None:
        raise KvmhubError("cannot plug the NIC")

    with pytest.raises(KvmhubError, match="cannot plug the NIC"):
        guest_exec.run_shell(Agent(dom), "sleep 60", started=plug)  # type: ignore[arg-type]
    assert [c["execute"] for c in sent] == ["guest-exec", "guest-exec"]
    assert sent[1]["arguments"]["arg"][-1] == "7"  # kill -9 of the script's pid
    assert "kill -9" in " ".join(sent[1]["arguments"]["arg"])
