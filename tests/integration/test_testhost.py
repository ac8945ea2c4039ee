"""The private test host harness itself: isolation, guests, teardown, crash cleanup, several hosts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from kvmhub.testing import TestHost, TestSwitch, cleanup_stale
from kvmhub.testing._procs import pids_in_netns

pytestmark = pytest.mark.integration

NETWORK_XML = """\
<network>
  <name>isolated0</name>
  <bridge name="kvmhubt0"/>
  <ip address="192.168.213.1" netmask="255.255.255.0">
    <dhcp><range start="192.168.213.10" end="192.168.213.20"/></dhcp>
  </ip>
</network>
"""

# No disks, no devices: QEMU starts under TCG and sits in the firmware.
DOMAIN_XML = """\
<domain type="qemu">
  <name>{name}</name>
  <memory unit="MiB">64</memory>
  <os><type>hvm</type></os>
</domain>
"""


def root_links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout


def names(pids: list[int]) -> list[str]:
    return [Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids if Path(f"/proc/{pid}").exists()]


def test_host_answers_on_its_private_socket(test_host: TestHost, libvirt_conn: Any) -> None:
    assert test_host.socket_path.is_socket()
    assert libvirt_conn.getType() == "QEMU"
    env = test_host.env()
    assert env["KVMHUB_URI"] == test_host.uri
    # The private daemon's config is visible through host_root, and differs from the machine's.
    private_conf = Path(env["KVMHUB_HOST_ROOT"] + "/etc/libvirt/qemu.conf").read_text()
    assert 'security_driver = "none"' in private_conf
    assert private_conf != Path("/etc/libvirt/qemu.conf").read_text()
    assert test_host.run(["cat", "/etc/libvirt/qemu.conf"]).stdout == private_conf


def test_network_exists_only_inside(test_host: TestHost, libvirt_conn: Any) -> None:
    net = libvirt_conn.networkDefineXML(NETWORK_XML)
    try:
        net.create()
        inside = test_host.run(["ip", "-br", "link"]).stdout
        assert "kvmhubt0" in inside
        assert "kvmhubt0" not in root_links()
        assert "dnsmasq" in names(pids_in_netns(test_host.netns or ""))
    finally:
        if net.isActive():
            net.destroy()
        net.undefine()
    assert "kvmhubt0" not in test_host.run(["ip", "-br", "link"]).stdout


def test_transient_domain_starts_and_logs_through_host_root(test_host: TestHost, libvirt_conn: Any) -> None:
    dom = libvirt_conn.createXML(DOMAIN_XML.format(name="harness-t1"), 0)
    try:
        assert dom.isActive()
        log = test_host.inside("/var/log/libvirt/qemu/harness-t1.log")
        assert "qemu-system-x86_64" in log.read_text()
        assert "qemu-system-x86" in names(pids_in_netns(test_host.netns or ""))
    finally:
        dom.destroy()
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.lookupByName("harness-t1")


def test_stop_leaves_nothing_behind(host_factory: Callable[..., TestHost]) -> None:
    host = host_factory()
    conn = host.connect()
    conn.networkCreateXML(NETWORK_XML)
    conn.createXML(DOMAIN_XML.format(name="left-running"), 0)
    conn.close()
    netns, dir_ = host.netns, host.dir
    assert netns is not None
    assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86"} <= set(names(pids_in_netns(netns)))

    began = time.monotonic()
    host.stop()
    print(f"start {host.start_seconds:.2f} s, stop {time.monotonic() - began:.2f} s")

    assert pids_in_netns(netns) == []
    assert not dir_.exists()
    host.stop()  # a second stop is harmless


def test_two_hosts_run_at_once(test_host: TestHost, host_factory: Callable[..., TestHost]) -> None:
    other = host_factory()
    assert other.uri != test_host.uri
    assert other.netns != test_host.netns
    conns = [libvirt.open(h.uri) for h in (test_host, other)]
    try:
        # The same name on both: two separate daemons.
        doms = [c.createXML(DOMAIN_XML.format(name="twin"), 0) for c in conns]
        assert [d.isActive() for d in doms] == [1, 1]
        doms[1].destroy()
        assert doms[0].isActive()
        doms[0].destroy()
    finally:
        for c in conns:
            c.close()


# Run in a child process that gets SIGKILLed: nothing of its own cleanup runs.
_CRASHING_OWNER = """\
import json, sys, time
from kvmhub.testing import TestHost
host = TestHost().start()
conn = host.connect()
conn.networkCreateXML(sys.argv[1])
conn.createXML(sys.argv[2], 0)
print(json.dumps({"id": host.id, "dir": str(host.dir), "netns": host.netns}), flush=True)
time.sleep(600)
"""


@pytest.fixture
def private_base(test_host: TestHost) -> Iterator[Path]:
    """A host base dir of its own, so no other worker's cleanup_stale races this test's."""
    base = Path(tempfile.mkdtemp(prefix="kvmhub-crash-", dir="/tmp"))
    caps = test_host.base / ".qemu-capabilities"
    if caps.is_dir():
        shutil.copytree(caps, base / caps.name)  # skip the cold QEMU probe
    yield base
    shutil.rmtree(base)


def test_cleanup_stale_after_owner_sigkill(test_host: TestHost, private_base: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_OWNER, NETWORK_XML, DOMAIN_XML.format(name="orphan")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "KVMHUB_TESTHOST_BASE": str(private_base)},
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    leftovers = names(pids_in_netns(info["netns"]))
    assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86"} <= set(leftovers)

    assert cleanup_stale(private_base) == [info["id"]]

    assert pids_in_netns(info["netns"]) == []
    assert not Path(info["dir"]).exists()
    # Live hosts (the session's) are never stale.
    assert test_host.id not in cleanup_stale()
    assert test_host.socket_path.is_socket()


def test_switch_joins_hosts_over_tcp(host_factory: Callable[..., TestHost]) -> None:
    with TestSwitch() as switch:
        a = host_factory(switch=switch)
        b = host_factory(switch=switch)
        assert a.address != b.address
        assert a.host_uuid != b.host_uuid
        # From inside host a, b's libvirtd answers over the switch with its own host UUID.
        caps = a.run(["virsh", "-q", "-c", b.tcp_uri, "capabilities"]).stdout
        assert f"<uuid>{b.host_uuid}</uuid>" in caps
        # The switch link is invisible in the root namespace.
        assert f"v{a.id}"[:15] not in root_links()

        # Live migration between the two daemons: a's libvirtd talks to b's over qemu+tcp.
        with libvirt.open(a.uri) as conn_a, libvirt.open(b.uri) as conn_b:
            dom = conn_a.createXML(DOMAIN_XML.format(name="traveller"), 0)
            dom.migrateToURI3(b.tcp_uri, {}, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER)
            assert conn_b.lookupByName("traveller").isActive()
            assert conn_a.listAllDomains() == []
        a.stop()
        b.stop()
