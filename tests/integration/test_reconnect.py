"""A long-lived kvmhub connection survives a libvirtd restart: the next call reconnects by itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from kvmhub.errors import HostProblem
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"libvirtd {pid} did not exit")


def test_reconnect_after_libvirtd_restart(host_factory: Callable[..., TestHost]) -> None:
    host = host_factory()
    hv = Hypervisor(host.uri, timeout=10)
    before = hv_domains.versions(hv)
    pidfile = host.dir / "run" / "libvirtd.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    # while it is down: a clear host problem, not a hang
    with pytest.raises(HostProblem):
        hv_domains.list_all(hv)
    host.run(["libvirtd", "-d", "-p", str(pidfile)])
    deadline = time.monotonic() + 30
    while True:
        try:
            assert hv_domains.versions(hv) == before
            break
        except HostProblem:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    assert isinstance(hv_domains.list_all(hv), list)
    hv.close()
