"""Running commands inside a test guest through its guest agent: the tests' one helper, over kvmhub's own
(`kvmhub.hv.agent`, `kvmhub.services.vm.guest_exec`).

`guest_start` starts a command and returns its guest PID, `guest_run` waits for it and returns its exit code and
output, `guest_sh` runs a shell script, waiting for the agent of a guest that is still booting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kvmhub.errors import KvmhubError, OperationTimeout
from kvmhub.hv import Hypervisor
from kvmhub.hv.agent import agent
from kvmhub.models.guest import ExecRequest
from kvmhub.services.vm import guest_exec
from kvmhub.testing import TestHost


@dataclass
class GuestResult:
    code: int
    out: str
    err: str


def guest_start(host: TestHost, vm: str, argv: list[str]) -> int:
    """Start argv in the guest without waiting for it; returns its PID in the guest."""
    with Hypervisor(host.uri) as hv:
        return agent(hv, vm).exec(argv)


def guest_run(host: TestHost, vm: str, argv: list[str], timeout: float = 60) -> GuestResult:
    """Run argv in the guest and wait for it (its output captured, not streamed: a full guest disk does not
    matter); raises AssertionError if it does not finish in time."""
    outs: list[bytes] = []
    errs: list[bytes] = []
    with Hypervisor(host.uri) as hv:
        try:
            done = guest_exec.run(hv, vm, ExecRequest(argv=argv, timeout=timeout), out=outs.append,
                                  err=errs.append, stream=False)
        except OperationTimeout:
            raise AssertionError(f"{argv} did not finish in {vm} within {timeout} s") from None
    return GuestResult(done.exit_code, b"".join(outs).decode(errors="replace"),
                       b"".join(errs).decode(errors="replace"))


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
