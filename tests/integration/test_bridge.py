"""`kvmhub net bridge create|rm` on a veth uplink inside a private test host, with its gateway in a second netns.

Layout (nothing of it in the machine's own network namespace)::

    test host netns                         gateway netns (made here with `unshare --net`)
    eth-up 10.66.0.2/24, default via .1 <--veth--> gw0 10.66.0.1/24
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from kvmhub.testing import TestHost
from kvmhub.testing._procs import netns_of
from tests.integration.conftest import Result, run_kvmhub

HOST_IP = "10.66.0.2"
GATEWAY = "10.66.0.1"


@dataclass
class Uplink:
    """A test host whose `eth-up` reaches a gateway living in its own namespace."""

    host: TestHost
    gateway_pid: int

    def gw(self, *argv: str) -> None:
        """Run a command in the gateway's namespace."""
        subprocess.run(["nsenter", f"--target={self.gateway_pid}", "--net", "--", *argv],
                       check=True, capture_output=True, timeout=30)

    def ip(self, *args: str) -> Any:
        """`ip -json ARGS` inside the test host, parsed."""
        return json.loads(self.host.run(["ip", "-json", *args]).stdout or "[]")

    def kvmhub(self, *args: str) -> Result:
        return run_kvmhub(self.host, *args, timeout=120)

    def links(self) -> dict[str, dict[str, Any]]:
        return {x["ifname"]: x for x in self.ip("link", "show")}

    def addresses(self, dev: str) -> set[str]:
        shown = self.ip("addr", "show", "dev", dev)
        return {f"{a['local']}/{a['prefixlen']}" for a in shown[0]["addr_info"] if a.get("scope") != "link"}

    def routes(self) -> list[str]:
        """Every route of the host (both families, all tables but the kernel's `local`), for comparison."""
        found = self.ip("route", "show", "table", "all") + self.ip("-6", "route", "show", "table", "all")
        return sorted(json.dumps(r, sort_keys=True) for r in found if r.get("table") != "local")

    def pings_gateway(self) -> bool:
        return self.host.run(["ping", "-n", "-c", "1", "-W", "2", GATEWAY], check=False).returncode == 0


def _wait_own_netns(pid: int) -> None:
    deadline = time.monotonic() + 10
    while netns_of(pid) in (None, netns_of("self")):
        if time.monotonic() > deadline:
            raise AssertionError("the gateway namespace did not appear")
        time.sleep(0.02)


@pytest.fixture
def uplink(host_factory: Callable[..., TestHost]) -> Iterator[Uplink]:
    """A fresh test host with eth-up 10.66.0.2/24 and a default route via the gateway 10.66.0.1."""
    host = host_factory()
    gateway = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"])
    try:
        _wait_own_netns(gateway.pid)
        up = Uplink(host, gateway.pid)
        host.run(["ip", "link", "add", "eth-up", "type", "veth", "peer", "name", "gw0", "netns", str(gateway.pid)])
        host.run(["ip", "addr", "add", f"{HOST_IP}/24", "dev", "eth-up"])
        host.run(["ip", "link", "set", "eth-up", "up"])
        up.gw("ip", "addr", "add", f"{GATEWAY}/24", "dev", "gw0")
        up.gw("ip", "link", "set", "gw0", "up")
        host.run(["ip", "route", "add", "default", "via", GATEWAY])
        assert up.pings_gateway()
        yield up
    finally:
        # the gateway namespace dies with its only process, and the veth pair with it
        gateway.kill()
        gateway.wait()
        host.run(["ip", "link", "del", "br0"], check=False)


def test_bridge_create_moves_addresses_and_routes_and_keeps_the_gateway(uplink: Uplink) -> None:
    r = uplink.kvmhub("net", "bridge", "create", "br0", "--from", "eth-up", "--timeout", "10")
    assert r.code == 0, r.err
    assert uplink.addresses("br0") == {f"{HOST_IP}/24"}
    assert uplink.addresses("eth-up") == set()
    assert uplink.links()["eth-up"].get("master") == "br0"
    (default,) = uplink.ip("route", "show", "default")
    assert (default["dev"], default["gateway"]) == ("br0", GATEWAY)
    assert uplink.pings_gateway()

    r = uplink.kvmhub("net", "bridge", "create", "br0", "--from", "eth-up")
    assert r.code == 4 and "already exists" in r.err

    r = uplink.kvmhub("net", "create", "lan", "--mode", "bridge", "--bridge", "br0")
    assert r.code == 0, r.err
    assert uplink.kvmhub("net", "show", "lan", "--json").json()["bridge"] == "br0"
    assert uplink.kvmhub("net", "rm", "lan").code == 0

    r = uplink.kvmhub("net", "bridge", "rm", "br0", "--timeout", "10")
    assert r.code == 0, r.err
    assert "br0" not in uplink.links()
    assert uplink.addresses("eth-up") == {f"{HOST_IP}/24"}
    (default,) = uplink.ip("route", "show", "default")
    assert (default["dev"], default["gateway"]) == ("eth-up", GATEWAY)
    assert uplink.pings_gateway()


def test_bridge_create_rolls_back_when_the_gateway_stops_answering(uplink: Uplink) -> None:
    uplink.host.run(["ip", "-6", "addr", "add", "fd66::2/64", "dev", "eth-up", "nodad"])
    uplink.host.run(["ip", "route", "add", "10.67.0.0/16", "via", GATEWAY, "table", "100", "metric", "7"])
    links_before = uplink.links()
    routes_before = uplink.routes()
    addresses_before = uplink.addresses("eth-up")
    uplink.gw("ip", "addr", "del", f"{GATEWAY}/24", "dev", "gw0")

    start = time.monotonic()
    r = uplink.kvmhub("net", "bridge", "create", "br0", "--from", "eth-up", "--timeout", "4")
    elapsed = time.monotonic() - start
    assert r.code != 0
    assert "rolled back" in r.err and GATEWAY in r.err, r.err
    # 4 s of checking, 1 s of looking before, and the CLI's own start-up
    assert elapsed < 4 + 1 + 8, elapsed
    assert "br0" not in uplink.links()
    assert uplink.addresses("eth-up") == addresses_before == {f"{HOST_IP}/24", "fd66::2/64"}
    assert uplink.routes() == routes_before
    assert uplink.links()["eth-up"].get("master") is None
    assert uplink.links()["eth-up"]["flags"] == links_before["eth-up"]["flags"]


def test_bridge_create_from_a_missing_device_names_the_devices_there_are(uplink: Uplink) -> None:
    r = uplink.kvmhub("net", "bridge", "create", "br0", "--from", "eth-nope")
    assert r.code == 2
    assert "eth-nope" in r.err and "eth-up" in r.err and "lo" in r.err, r.err
    assert "br0" not in uplink.links()
