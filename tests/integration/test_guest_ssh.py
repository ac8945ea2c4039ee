"""Ready means SSH works: one tiny guest made with `create --wait` (a seeded VM waits for ready), then `show`
and `ls` say ready and `kvmhub ssh` runs a command in it with the key kvmhub put in the seed.

The guest's network lives in the test host's network namespace: `kvmhub ssh` runs there (nsenter --net).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET, Result, Runner

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
