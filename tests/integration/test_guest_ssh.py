"""Ready means SSH works: one tiny guest made with `create --wait` (a seeded VM waits for ready), then `show`
and `ls` say ready and `kvmhub ssh` runs a command in it with the key kvmhub put in the seed.

The guest's network lives in the test host's network namespace: `kvmhub ssh` runs there (nsenter --net).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET, Result, Runner
from tests.integration.guest import guest_sh

pytestmark = pytest.mark.integration

VM = "ssh1"


@pytest.fixture(scope="module")
def created(prepared_host: TestHost, kvmhub: Runner) -> Iterator[tuple[Result, float]]:
    """The guest, created with a bare --wait: its create's result and how long the create took."""
    start = time.monotonic()
    r = kvmhub("create", VM, "--image", "tiny", "--network", LAB_NET, "--memory", "192M", "--wait",
               "--timeout", "240")
    took = time.monotonic() - start
    try:
        assert r.code == 0, r.err
        yield r, took
    finally:
        kvmhub("rm", VM)


def in_host_net(host: TestHost, *args: str, timeout: float = 60) -> Result:
    """The kvmhub CLI run in the test host's network namespace, where the guest's network is."""
    env = {**os.environ, **host.env()}
    done = subprocess.run(["nsenter", f"--target={host.holder_pid}", "--net", "--", *KVMHUB, *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def test_create_wait_returns_at_ready_and_names_the_user(created: tuple[Result, float], kvmhub: Runner) -> None:
    r, _ = created
    assert "SSH keys for user root" in r.err
    assert "ready" in r.err  # the last phase the wait reported
    assert kvmhub("show", VM, "--json").json()["phase"] == "ready"
    listed = {v["name"]: v for v in kvmhub("ls", "--json").json()}
    assert listed[VM]["phase"] == "ready"
    assert kvmhub("show", VM, "--json").json()["user"] == "root"


def test_ssh_runs_a_command_with_kvmhubs_key(created: tuple[Result, float], prepared_host: TestHost,
                                             kvmhub: Runner) -> None:
    r = in_host_net(prepared_host, "ssh", VM, "--", "echo", "hi")
    assert r.code == 0, r.err
    assert r.out == "hi\n"
    r = in_host_net(prepared_host, "ssh", VM, "--", "echo $(hostname) >&2; exit 3")  # as ssh: the guest's shell
    assert (r.code, r.err) == (3, f"{VM}\n"), r.err
    uuid = kvmhub("show", VM, "--json").json()["uuid"]
    state = os.environ["KVMHUB_STATE_DIR"]
    with open(f"{state}/ssh/known_hosts/{uuid}") as fh:  # the host key learned on first connect
        assert fh.read().strip()


def random_file(where: Path, size: int) -> Path:
    """A file of ``size`` random bytes: big enough (512 KiB or more) for cp to send it over SSH."""
    src = where / "big.bin"
    src.write_bytes(os.urandom(size))
    return src


def test_cp_of_a_big_file_goes_over_ssh_both_ways(created: tuple[Result, float], prepared_host: TestHost,
                                                  tmp_path: Path) -> None:
    src = random_file(tmp_path, 20 * 1024 * 1024 + 5)
    src.chmod(0o640)
    r = in_host_net(prepared_host, "cp", str(src), f"{VM}:/root/big.bin")
    assert r.code == 0, r.err
    assert f"copied {src.stat().st_size} bytes to {VM}:/root/big.bin over SSH" in r.err
    assert guest_sh(prepared_host, VM, "stat -c '%a %s' /root/big.bin; ls -A /root | grep -c kvmhub- || true") == \
        f"640 {src.stat().st_size}\n0\n"  # the mode set, no temporary file left
    back = tmp_path / "back.bin"
    r = in_host_net(prepared_host, "cp", f"{VM}:/root/big.bin", str(back))
    assert r.code == 0, r.err
    assert "over SSH" in r.err
    assert back.read_bytes() == src.read_bytes() and back.stat().st_mode & 0o777 == 0o640


def test_cp_falls_back_to_the_agent_when_ssh_refuses_the_key(created: tuple[Result, float],
                                                             prepared_host: TestHost, tmp_path: Path) -> None:
    src = random_file(tmp_path, 1024 * 1024)
    guest_sh(prepared_host, VM, "mv /root/.ssh/authorized_keys /root/.ssh/off")
    try:
        r = in_host_net(prepared_host, "cp", str(src), f"{VM}:/root/agent.bin")
    finally:
        guest_sh(prepared_host, VM, "mv /root/.ssh/off /root/.ssh/authorized_keys")
    assert r.code == 0, r.err
    assert "copying through the guest agent (slower): SSH to" in r.err and "over SSH" not in r.err
    assert guest_sh(prepared_host, VM, "md5sum < /root/agent.bin").split()[0] == \
        hashlib.md5(src.read_bytes()).hexdigest()  # noqa: S324 (a checksum the guest's busybox has)


def test_cp_over_ssh_that_cannot_write_says_why_and_leaves_nothing(created: tuple[Result, float],
                                                                   prepared_host: TestHost, tmp_path: Path) -> None:
    src = random_file(tmp_path, 1024 * 1024)
    guest_sh(prepared_host, VM, "mkdir -p /root/ro && mount -t tmpfs -o ro,size=1m none /root/ro")
    try:
        r = in_host_net(prepared_host, "cp", str(src), f"{VM}:/root/ro/f.bin")
        left = guest_sh(prepared_host, VM, "ls -A /root/ro | wc -l")
    finally:
        guest_sh(prepared_host, VM, "umount /root/ro; rmdir /root/ro")
    assert r.code != 0
    assert f"copying {VM}:/root/ro/f.bin over SSH" in r.err and "Read-only" in r.err, r.err
    assert left.strip() == "0"
