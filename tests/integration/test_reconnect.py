"""A long-lived kvmhub connection survives a libvirtd restart: the next call reconnects by itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from lxml import etree

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


def _domain_xml(name: str) -> str:
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    etree.SubElement(etree.SubElement(dom, "os"), "type", arch="x86_64").text = "hvm"
    return etree.tostring(dom, encoding="unicode")


def test_reconnect_after_libvirtd_restart(host_factory: Callable[..., TestHost]) -> None:
    host = host_factory()
    conn = host.connect()
    try:
        for name in ("rc-a", "rc-b"):
            conn.defineXML(_domain_xml(name))
    finally:
        conn.close()
    hv = Hypervisor(host.uri, timeout=10)
    before = hv_domains.versions(hv)
    names = sorted(d.name for d in hv_domains.list_all(hv))
    assert names == ["rc-a", "rc-b"]
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
    assert sorted(d.name for d in hv_domains.list_all(hv)) == names  # the same VMs as before the restart
    hv.close()


def test_first_call_after_a_restart_succeeds(host_factory: Callable[..., TestHost]) -> None:
    """libvirtd restarted between two calls: the second call reconnects and answers, with no error."""
    host = host_factory()
    hv = Hypervisor(host.uri, timeout=10)
    try:
        assert hv_domains.list_all(hv) == []  # connected
        pidfile = host.dir / "run" / "libvirtd.pid"
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
        host.run(["libvirtd", "-d", "-p", str(pidfile)])
        deadline = time.monotonic() + 30
        while host.virsh("version", check=False).returncode != 0:  # another client sees it up again
            assert time.monotonic() < deadline, "libvirtd did not come back"
            time.sleep(0.2)
        conn = host.connect()
        try:
            conn.defineXML(_domain_xml("rc-after"))
        finally:
            conn.close()
        assert [d.name for d in hv_domains.list_all(hv)] == ["rc-after"]  # first call on the old Hypervisor
    finally:
        hv.close()
