"""Running commands inside a test guest through its guest agent (qemu-ga's guest-exec): the tests' one helper.

`guest_start` starts a command and returns its guest PID, `guest_run` waits for it and returns its exit code and
output, `guest_sh` runs a shell script, waiting for the agent of a guest that is still booting.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost


@dataclass
class GuestResult:
    code: int
    out: str
    err: str


def guest_start(host: TestHost, vm: str, argv: list[str]) -> int:
    """Start argv in the guest without waiting for it; returns its PID in the guest."""
    with Hypervisor(host.uri) as hv:
        started = hv_domains.lookup(hv, vm).agent_command(
            {"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True}},
            timeout=30,
        )
    return int(started["pid"])


def guest_run(host: TestHost, vm: str, argv: list[str], timeout: float = 60) -> GuestResult:
    """Run argv in the guest and wait for it; raises AssertionError if it does not finish in time."""
    pid = guest_start(host, vm, argv)
    hv = Hypervisor(host.uri)
    try:
        dom = hv_domains.lookup(hv, vm)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = dom.agent_command({"execute": "guest-exec-status", "arguments": {"pid": pid}}, timeout=10)
            if status.get("exited"):
                return GuestResult(
                    int(status.get("exitcode", -1)),
                    base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
                    base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
                )
            time.sleep(0.2)
        raise AssertionError(f"{argv} did not finish in {vm} within {timeout} s")
    finally:
        hv.close()


def guest_sh(host: TestHost, vm: str, script: str, wait: float = 180, timeout: float = 60) -> str:
    """`sh -c script` in the guest, retried for `wait` s while its agent is not up yet; asserts exit 0, returns
    stdout."""
    deadline = time.monotonic() + wait
    while True:
        try:
            r = guest_run(host, vm, ["sh", "-c", script], timeout=timeout)
            break
        except KvmhubError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert r.code == 0, f"{script!r} in {vm} exited {r.code}: {r.out}{r.err}"
    return r.out
