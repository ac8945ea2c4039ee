"""`kvmhub net lease rm NET (MAC|IP|NAME)`: a leftover reservation can be removed; a VM's is kept unless --force."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner

NET = "leases"
SUBNET = "10.81.0.0/24"


def _reservations(kvmhub: Runner) -> dict[str, dict[str, str]]:
    r = kvmhub("net", "lease", "ls", NET, "--json")
    assert r.code == 0, r.err
    return {x["hostname"]: x for x in r.json() if x["kind"] == "reserved"}


@pytest.fixture
def net(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    r = kvmhub("net", "create", NET, "--mode", "isolated", "--subnet", SUBNET, "--domain", "lab")
    assert r.code == 0, r.err
    try:
        yield NET
    finally:
        for vm in ("lr1", "lr2"):
            kvmhub("rm", vm)
        kvmhub("net", "rm", NET, "--force")


def test_a_reservation_left_by_a_virsh_undefine_is_removed_by_ip(
    net: str, prepared_host: TestHost, kvmhub: Runner
) -> None:
    assert kvmhub("create", "lr1", "--image", "tiny", "--network", net, "--no-start").code == 0
    ip = _reservations(kvmhub)["lr1"]["ip"]
    r = kvmhub("net", "lease", "rm", net, ip)
    assert r.code == 4 and "belongs to VM lr1" in r.err and "--force" in r.err, r.err
    assert "lr1" in _reservations(kvmhub)
    prepared_host.virsh("undefine", "lr1", "--remove-all-storage")  # the VM goes, its reservation stays
    assert "lr1" in _reservations(kvmhub)
    r = kvmhub("net", "lease", "rm", net, ip)
    assert r.code == 0, r.err
    assert f"reservation {ip}" in r.err and "DNS lr1, lr1.lab" in r.err
    assert "lr1" not in _reservations(kvmhub)
    xml = etree.fromstring(prepared_host.virsh("net-dumpxml", net).stdout.encode())
    assert not xml.xpath("//dhcp/host[@ip=$ip] | //dns/host[@ip=$ip]", ip=ip)
    assert not xml.xpath("//*[@name='lr1'] | //hostname[text()='lr1']")
    r = kvmhub("net", "lease", "rm", net, ip)
    assert r.code == 3 and f"no reservation for '{ip}'" in r.err, r.err


def test_force_removes_a_vms_reservation_by_mac_or_name(net: str, kvmhub: Runner) -> None:
    for vm in ("lr1", "lr2"):
        assert kvmhub("create", vm, "--image", "tiny", "--network", net, "--no-start").code == 0
    mac = _reservations(kvmhub)["lr1"]["mac"]
    r = kvmhub("net", "lease", "rm", net, mac.upper(), "--force")
    assert r.code == 0, r.err
    r = kvmhub("net", "lease", "rm", net, "lr2", "--force")
    assert r.code == 0, r.err
    assert _reservations(kvmhub) == {}
    assert kvmhub("show", "lr1").code == 0 and kvmhub("show", "lr2").code == 0  # the VMs are left alone
