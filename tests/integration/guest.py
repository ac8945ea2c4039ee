"""Running commands inside a test guest through its guest agent (qemu-ga's guest-exec)."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost


@dataclass
class GuestResult:
    code: int
    out: str
    err: str


def guest_run(host: TestHost, vm: str, argv: list[str], timeout: float = 60) -> GuestResult:
    """Run argv in the guest and wait for it; raises AssertionError if it does not finish in time."""
    hv = Hypervisor(host.uri)
    try:
        dom = hv_domains.lookup(hv, vm)
        started = dom.agent_command(
            {"execute": "guest-exec", "arguments": {"path": argv[0], "arg": argv[1:], "capture-output": True}},
            timeout=10,
        )
        pid = started["pid"]
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


def guest_sh(host: TestHost, vm: str, script: str, wait: float = 180) -> str:
    """`sh -c script` in the guest, retried while its agent is not up yet; asserts exit 0, returns stdout."""
    from kvmhub.errors import KvmhubError

    deadline = time.monotonic() + wait
    while True:
        try:
            r = guest_run(host, vm, ["sh", "-c", script], timeout=60)
            break
        except KvmhubError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert r.code == 0, f"{script!r} in {vm} exited {r.code}: {r.out}{r.err}"
    return r.out
