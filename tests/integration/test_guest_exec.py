"""`kvmhub exec` and `kvmhub cp` on one booted tiny guest, through its real qemu-guest-agent: output, exit codes,
stdin, a timeout that kills, a missing program or path; a few-MiB file copied in and back byte-exact with its
mode; and the same once through a `kvmhub serve` on the test host."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, Result
from tests.integration.guest import guest_sh
from tests.integration.test_server import start_server


def kvmhub_in(host: TestHost, *args: str, stdin: str = "", timeout: float = 120) -> Result:
    """The CLI against the test host, ``stdin`` as its input (a pipe, as from a script)."""
    done = subprocess.run([*KVMHUB, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **host.env()}, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def vm(booted_vm: str, prepared_host: TestHost) -> str:
    guest_sh(prepared_host, booted_vm, "true")  # the agent answers
    return booted_vm


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="kh-gx-"))  # short: it holds a server's unix socket
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_exec_gives_stdout_stderr_and_the_exit_code(prepared_host: TestHost, vm: str) -> None:
    r = kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert (r.code, r.out, r.err) == (3, "to-out\n", "to-err\n")
    r = kvmhub_in(prepared_host, "exec", "--env", "GREETING=hi there", vm, "--", "sh", "-c", 'echo "$GREETING"')
    assert (r.code, r.out) == (0, "hi there\n")
    assert kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "kill -9 $$").code == 137


def test_exec_passes_stdin(prepared_host: TestHost, vm: str) -> None:
    r = kvmhub_in(prepared_host, "exec", vm, "--", "tr", "a-z", "A-Z", stdin="hello guest\n")
    assert (r.code, r.out) == (0, "HELLO GUEST\n")
    big = "0123456789abcdef" * 20000  # 320000 bytes: more than one agent request takes
    r = kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "wc -c; echo done", stdin=big)
    assert (r.code, r.out.split()) == (0, ["320000", "done"])


def test_exec_output_comes_as_it_is_written(prepared_host: TestHost, vm: str) -> None:
    streams_output(prepared_host, vm)


def streams_output(host: TestHost, vm: str, *options: str) -> None:
    proc = subprocess.Popen([*KVMHUB, *options, "exec", "-n", vm, "--", "sh", "-c", "echo first; sleep 4; echo second"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **host.env()})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    seen_first = time.monotonic()
    rest = proc.stdout.read()
    assert proc.wait(60) == 0
    assert (first, rest) == ("first\n", "second\n")
    assert time.monotonic() - seen_first > 2.5, "the first line came only when the command ended"


def test_a_command_past_its_timeout_is_killed(prepared_host: TestHost, vm: str) -> None:
    start = time.monotonic()
    r = kvmhub_in(prepared_host, "exec", "--timeout", "2", vm, "--", "sleep", "300")
    assert r.code == 6 and "sleep did not finish within 2 s" in r.err and "it was killed" in r.err
    assert time.monotonic() - start < 60
    left = kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "grep -lx sleep /proc/[0-9]*/comm")
    assert left.code == 1, left.out  # no sleep process left in the guest
    # of kvmhub's private directories, only the one of this command is left
    assert kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "ls /tmp | grep -c kvmhub-exec").out == "1\n"


def test_a_missing_program_is_not_found(prepared_host: TestHost, vm: str) -> None:
    r = kvmhub_in(prepared_host, "exec", vm, "--", "no-such-program", "x")
    assert r.code == 3 and "no program 'no-such-program' in VM" in r.err


def test_cp_round_trips_a_file_with_its_mode(prepared_host: TestHost, vm: str, tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    src.chmod(0o750)
    r = kvmhub_in(prepared_host, "cp", str(src), f"{vm}:/root/")
    assert r.code == 0 and f"copied {src.stat().st_size} bytes to {vm}:/root/blob.bin" in r.err, r.err
    inside = kvmhub_in(prepared_host, "exec", vm, "--", "sh", "-c", "stat -c '%a %s' /root/blob.bin")
    assert inside.out == f"750 {src.stat().st_size}\n"
    back = tmp_path / "back"
    back.mkdir()
    r = kvmhub_in(prepared_host, "cp", f"{vm}:/root/blob.bin", str(back))
    assert r.code == 0, r.err
    assert hashlib.sha256((back / "blob.bin").read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert (back / "blob.bin").stat().st_mode & 0o777 == 0o750


def test_cp_refuses_a_missing_path_and_a_directory(prepared_host: TestHost, vm: str, tmp_path: Path) -> None:
    r = kvmhub_in(prepared_host, "cp", f"{vm}:/no/such/file", str(tmp_path))
    assert r.code == 3 and "/no/such/file not found in VM" in r.err
    assert list(tmp_path.iterdir()) == []
    local = tmp_path / "f"
    local.write_text("x")
    r = kvmhub_in(prepared_host, "cp", str(local), f"{vm}:/tmp")
    assert r.code == 4 and "/tmp is a directory" in r.err
    r = kvmhub_in(prepared_host, "cp", str(local), f"{vm}:/no/such/dir/f")
    assert r.code == 3 and "no directory /no/such/dir" in r.err


def test_exec_and_cp_through_the_server(prepared_host: TestHost, vm: str, workdir: Path, tmp_path: Path) -> None:
    server = start_server(prepared_host, workdir)
    remote = ("--remote", f"unix:{workdir / 'kvmhub.sock'}")
    try:
        r = kvmhub_in(prepared_host, *remote, "exec", vm, "--", "sh", "-c", "cat; echo oops >&2; exit 5",
                      stdin="through\n")
        assert (r.code, r.out, r.err) == (5, "through\n", "oops\n")
        assert kvmhub_in(prepared_host, *remote, "exec", vm, "--", "no-such-program").code == 3
        streams_output(prepared_host, vm, *remote)
        answer = server.client.post(f"/vms/{vm}/exec", json={"argv": ["sh", "-c", "cat; echo e >&2; exit 2"],
                                                             "stdin": base64.b64encode(b"posted").decode()})
        assert answer.status_code == 200, answer.text
        done = answer.json()
        assert (done["exit_code"], base64.b64decode(done["stdout"]), base64.b64decode(done["stderr"])) == (
            2, b"posted", b"e\n")
        src = tmp_path / "srv.bin"
        src.write_bytes(os.urandom(3 * 1024 * 1024))
        assert kvmhub_in(prepared_host, *remote, "cp", str(src), f"{vm}:/root/srv.bin").code == 0
        r = kvmhub_in(prepared_host, *remote, "cp", f"{vm}:/root/srv.bin", str(tmp_path / "srv.back"))
        assert r.code == 0, r.err
        assert (tmp_path / "srv.back").read_bytes() == src.read_bytes()
        r = kvmhub_in(prepared_host, *remote, "cp", f"{vm}:/no/such/file", str(tmp_path / "x"))
        assert r.code == 3 and "/no/such/file not found in VM" in r.err
    finally:
        server.stop()
