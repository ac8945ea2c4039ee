"""Networks as a lab needs them: names, reservations, isolation, modes, and clean bookkeeping."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner
from tests.integration.guest import guest_run

NET = "names"
SUBNET = "10.78.0.0/24"
OTHER = "other"
OTHER_SUBNET = "10.79.0.0/24"
FIXED_IP = "10.78.0.50"


@pytest.fixture(scope="module")
def lab(prepared_host: TestHost, kvmhub: Runner) -> Iterator[dict[str, str]]:
    """Network `names` (domain lab) with VMs na (reserved 10.78.0.50) and nb; network `other` with nc."""
    made: list[str] = []
    try:
        r = kvmhub("net", "create", NET, "--mode", "isolated", "--subnet", SUBNET, "--domain", "lab")
        assert r.code == 0, r.err
        r = kvmhub("net", "create", OTHER, "--mode", "isolated", "--subnet", OTHER_SUBNET)
        assert r.code == 0, r.err
        for name, net, extra in (("na", NET, ["--ip", FIXED_IP]), ("nb", NET, []), ("nc", OTHER, [])):
            r = kvmhub("create", name, "--image", "tiny", "--network", net, "--memory", "160M", *extra)
            assert r.code == 0, r.err
            made.append(name)
        ips = {}
        for name in made:
            r = kvmhub("ip", name, "--wait", "--timeout", "240", "--json")
            assert r.code == 0, r.err
            ips[name] = r.json()[0]["ip"]
        yield ips
    finally:
        for name in made:
            kvmhub("rm", name)
        kvmhub("net", "rm", NET, "--force")
        kvmhub("net", "rm", OTHER, "--force")


def test_static_reservation_gives_exactly_the_reserved_ip(lab: dict[str, str], kvmhub: Runner) -> None:
    assert lab["na"] == FIXED_IP
    leases = kvmhub("net", "lease", "ls", NET, "--json").json()
    assert {"ip": FIXED_IP, "hostname": "na", "kind": "reserved"}.items() <= next(
        x for x in leases if x["ip"] == FIXED_IP
    ).items()
    assert ipaddress.ip_address(lab["nb"]) in ipaddress.ip_network(SUBNET)


def test_vms_on_one_network_ping_each_other_by_name(lab: dict[str, str], prepared_host: TestHost) -> None:
    for target in ("nb", "nb.lab"):
        r = guest_run(prepared_host, "na", ["/bin/ping", "-c", "2", "-W", "5", target])
        assert r.code == 0, r.out + r.err
        assert lab["nb"] in r.out
    r = guest_run(prepared_host, "nb", ["/bin/ping", "-c", "2", "-W", "5", "na"])
    assert r.code == 0 and FIXED_IP in r.out, r.out + r.err


def test_isolated_networks_cannot_reach_each_other(lab: dict[str, str], prepared_host: TestHost) -> None:
    r = guest_run(prepared_host, "na", ["/bin/ping", "-c", "2", "-W", "2", lab["nc"]])
    assert r.code != 0
    r = guest_run(prepared_host, "nc", ["/bin/ping", "-c", "2", "-W", "2", lab["na"]])
    assert r.code != 0


def test_reservation_refusals(lab: dict[str, str], kvmhub: Runner) -> None:
    r = kvmhub("net", "lease", "add", NET, "--vm", "nb", "--ip", "10.99.0.5")
    assert r.code == 2 and "outside network" in r.err and SUBNET in r.err
    r = kvmhub("net", "lease", "add", NET, "--vm", "nb", "--ip", FIXED_IP)
    assert r.code == 4 and "already reserved for na" in r.err
    r = kvmhub("create", "nd", "--image", "tiny", "--network", NET, "--ip", lab["nb"], "--no-start")
    assert r.code == 4 and "already" in r.err
    assert kvmhub("show", "nd").code == 3


def test_network_in_use_is_not_removed(lab: dict[str, str], kvmhub: Runner) -> None:
    r = kvmhub("net", "rm", NET)
    assert r.code == 4 and "na" in r.err and "nb" in r.err
    assert kvmhub("net", "show", NET).code == 0


def test_rm_releases_the_reservation_and_the_name(prepared_host: TestHost, kvmhub: Runner) -> None:
    assert kvmhub("create", "ne", "--image", "tiny", "--network", NET, "--no-start").code == 0
    xml = prepared_host.virsh("net-dumpxml", NET).stdout
    assert "name='ne'" in xml or 'name="ne"' in xml
    assert kvmhub("rm", "ne").code == 0
    xml = prepared_host.virsh("net-dumpxml", NET).stdout
    assert "ne" not in [h.split("'")[1] for h in xml.split("name=")[1:] if "'" in h]
    assert ">ne<" not in xml


def test_overlapping_subnet_and_bad_modes_refused(lab: dict[str, str], kvmhub: Runner) -> None:
    r = kvmhub("net", "create", "clash", "--subnet", "10.78.0.128/25")
    assert r.code == 4 and f"overlaps network '{NET}'" in r.err
    r = kvmhub("net", "create", "nobr", "--mode", "bridge", "--bridge", "br-missing")
    assert r.code == 2 and "no network device 'br-missing'" in r.err
    r = kvmhub("net", "create", "nodev", "--mode", "direct")
    assert r.code == 2 and "--dev" in r.err


@pytest.mark.parametrize(("mode", "extra"), [("routed", []), ("open", []), ("nat", ["--subnet6", "fd10:78::/64"])])
def test_other_modes_start(mode: str, extra: list[str], prepared_host: TestHost, kvmhub: Runner) -> None:
    name = f"m-{mode}"
    r = kvmhub("net", "create", name, "--mode", mode, *extra)
    try:
        assert r.code == 0, r.err
        info = kvmhub("net", "show", name, "--json").json()
        assert info["mode"] == mode and info["active"] is True
        if extra:
            assert info["subnet6"] == "fd10:78::/64"
    finally:
        kvmhub("net", "rm", name)


def test_bridge_mode_on_an_existing_host_bridge(prepared_host: TestHost, kvmhub: Runner) -> None:
    prepared_host.run(["ip", "link", "add", "br-lan", "type", "bridge"])
    try:
        r = kvmhub("net", "create", "lan", "--mode", "bridge", "--bridge", "br-lan")
        assert r.code == 0, r.err
        assert kvmhub("net", "show", "lan", "--json").json()["bridge"] == "br-lan"
        assert kvmhub("create", "onlan", "--image", "tiny", "--network", "lan", "--no-start").code == 0
        assert kvmhub("rm", "onlan").code == 0
        assert kvmhub("net", "rm", "lan").code == 0
    finally:
        prepared_host.run(["ip", "link", "del", "br-lan"], check=False)


def test_an_address_freed_by_rm_goes_to_the_next_vm_at_once(lab: dict[str, str], kvmhub: Runner) -> None:
    """dnsmasq keeps a removed VM's lease for an hour and gives no address leased to another MAC, even a reserved
    one: `rm` makes it drop the lease, so a VM made next with that address gets it."""
    ip = "10.78.0.60"
    try:
        assert kvmhub("create", "nf", "--image", "tiny", "--network", NET, "--ip", ip, "--memory", "128M").code == 0
        got = kvmhub("ip", "nf", "--wait", "--timeout", "240", "--json")
        assert got.code == 0, got.err
        assert got.json()[0]["ip"] == ip
        old_mac = got.json()[0]["mac"]
        assert kvmhub("rm", "nf").code == 0
        leases = kvmhub("net", "lease", "ls", NET, "--json").json()
        assert not [x for x in leases if x.get("mac") == old_mac], leases
        made = kvmhub("create", "ng", "--image", "tiny", "--network", NET, "--ip", ip, "--memory", "128M", "--wait",
                      "--timeout", "240")
        assert made.code == 0, made.err
        got = kvmhub("ip", "ng", "--json")
        assert got.code == 0, got.err
        assert [a["ip"] for a in got.json()] == [ip]
    finally:
        kvmhub("rm", "nf")
        kvmhub("rm", "ng")


def test_many_create_delete_cycles_leave_no_stale_entries(lab: dict[str, str], prepared_host: TestHost) -> None:
    from kvmhub.hv import Hypervisor
    from kvmhub.hv import networks as hv_networks
    from kvmhub.models import CreateRequest
    from kvmhub.services.vm import create as vm_create
    from kvmhub.services.vm import remove as vm_remove
    from kvmhub.xml.network import network_from_xml

    hv = Hypervisor(prepared_host.uri)
    try:
        before = network_from_xml(hv_networks.lookup_network(hv, NET).xml())
        for i in range(100):
            req = CreateRequest(name=f"cyc{i}", image="tiny", network=NET, memory="64M", start=False)
            vm_create.create(hv, req)
            facts = network_from_xml(hv_networks.lookup_network(hv, NET).xml())
            mine = [h for h in facts.dhcp_hosts if h.name == f"cyc{i}"]
            assert len(mine) == 1
            ips = [h.ip for h in facts.dhcp_hosts]
            macs = [h.mac for h in facts.dhcp_hosts]
            assert len(ips) == len(set(ips)), "duplicate reserved IP"
            assert len(macs) == len(set(macs)), "duplicate MAC"
            vm_remove.remove(hv, f"cyc{i}")
        after = network_from_xml(hv_networks.lookup_network(hv, NET).xml())
        assert after.dhcp_hosts == before.dhcp_hosts
        assert after.dns_hosts == before.dns_hosts
    finally:
        hv.close()


def _connect(host: TestHost, ip: str, port: int, *, retry: bool = True) -> str:
    """Read the first line a TCP server sends, from inside the test host's network namespace."""
    import sys

    code = (
        "import socket,sys\n"
        "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
        "print(s.recv(200).decode(errors='replace').strip())\n"
    )
    deadline = time.monotonic() + 60
    while True:  # the guest's service may still be starting
        r = host.run([sys.executable, "-c", code, ip, str(port)], check=False, timeout=30)
        if r.returncode == 0 or time.monotonic() > deadline or not retry:
            return r.stdout.strip() if r.returncode == 0 else f"failed: {r.stderr.strip()[-200:]}"
        time.sleep(1)


def test_port_forward_reaches_the_guest_service(lab: dict[str, str], prepared_host: TestHost,
                                                kvmhub: Runner) -> None:
    gateway = str(next(ipaddress.ip_network(SUBNET).hosts()))
    r = kvmhub("net", "forward", "add", "na", "2222:22")
    assert r.code == 0, r.err
    try:
        # the guest's SSH server (dropbear) answers through the host's port 2222
        assert _connect(prepared_host, gateway, 2222).startswith("SSH-2.0"), "forward did not reach the guest"
        listed = kvmhub("net", "forward", "ls", "--json").json()
        assert {"vm": "na", "host_port": 2222, "guest_port": 22, "proto": "tcp"}.items() <= listed[0].items()
        clash = kvmhub("net", "forward", "add", "nb", "2222:22")
        assert clash.code == 4 and "already forwarded to na" in clash.err
        # survives a restart of the VM (rules re-applied from the VM's metadata)
        assert kvmhub("kill", "na").code == 0
        assert kvmhub("start", "na", "--wait", "--timeout", "240").code == 0
        assert _connect(prepared_host, gateway, 2222).startswith("SSH-2.0")
    finally:
        r = kvmhub("net", "forward", "rm", "na", "2222")
    assert r.code == 0, r.err
    assert _connect(prepared_host, gateway, 2222, retry=False).startswith("failed")
    rules = prepared_host.run(["iptables", "-t", "nat", "-S"]).stdout
    assert "kvmhub:na" not in rules


def test_nic_hotplug_gives_the_guest_a_working_second_interface(lab: dict[str, str], prepared_host: TestHost,
                                                                 kvmhub: Runner) -> None:
    r = kvmhub("nic", "add", "nb", "--network", OTHER)
    assert r.code == 0, r.err
    assert "applied live" in r.err
    nics = kvmhub("nic", "ls", "nb", "--json").json()
    assert [n["network"] for n in nics] == [NET, OTHER]
    reserved = next(x for x in kvmhub("net", "lease", "ls", OTHER, "--json").json() if x["hostname"] == "nb")
    deadline = time.monotonic() + 60
    while "eth1" not in guest_run(prepared_host, "nb", ["/bin/busybox", "ip", "-o", "link"]).out:
        assert time.monotonic() < deadline, "the guest never saw eth1"
        time.sleep(1)
    guest_run(prepared_host, "nb", ["/bin/busybox", "ip", "link", "set", "eth1", "up"])
    udhcpc = ["/bin/busybox", "udhcpc", "-i", "eth1", "-s", "/etc/kvmhub/udhcpc", "-n", "-q", "-t", "5"]
    dhcp = guest_run(prepared_host, "nb", udhcpc, timeout=90)
    assert dhcp.code == 0, dhcp.out + dhcp.err
    addr = guest_run(prepared_host, "nb", ["/bin/busybox", "ip", "-o", "-4", "addr", "show", "eth1"]).out
    assert reserved["ip"] in addr
    ping = guest_run(prepared_host, "nb", ["/bin/ping", "-c", "2", "-W", "5", lab["nc"]])
    assert ping.code == 0, ping.out + ping.err
    r = kvmhub("nic", "rm", "nb", "1")
    assert r.code == 0, r.err
    assert [n["network"] for n in kvmhub("nic", "ls", "nb", "--json").json()] == [NET]
    assert "nb" not in [x["hostname"] for x in kvmhub("net", "lease", "ls", OTHER, "--json").json()
                        if x["kind"] == "reserved"]


def test_firewall_allows_only_the_listed_port(lab: dict[str, str], prepared_host: TestHost, kvmhub: Runner) -> None:
    gateway = str(next(ipaddress.ip_network(SUBNET).hosts()))
    assert guest_run(prepared_host, "nb", ["/bin/ping", "-c", "1", "-W", "3", FIXED_IP]).code == 0
    r = kvmhub("set", "na", "--firewall", "allow:22/tcp")
    assert r.code == 0, r.err
    assert "firewall allow:22/tcp (applied live)" in r.out
    try:
        assert kvmhub("nic", "ls", "na", "--json").json()[0]["filter"] == "kvmhub-allow-tcp-22"
        # new connections to 22 pass; anything else inbound (ping) is dropped
        r2 = prepared_host.run([sys.executable, "-c", _SSH_BANNER, FIXED_IP, "22"], check=False, timeout=30)
        assert r2.stdout.startswith("SSH-2.0"), r2.stdout + r2.stderr
        assert guest_run(prepared_host, "nb", ["/bin/ping", "-c", "2", "-W", "2", FIXED_IP]).code != 0
        # the guest itself still gets out (replies come back)
        assert guest_run(prepared_host, "na", ["/bin/ping", "-c", "1", "-W", "3", gateway]).code == 0
        bad = kvmhub("set", "na", "--firewall", "allow:99999/tcp")
        assert bad.code == 2 and "out of range" in bad.err
    finally:
        assert kvmhub("set", "na", "--firewall", "off").code == 0
    assert guest_run(prepared_host, "nb", ["/bin/ping", "-c", "1", "-W", "3", FIXED_IP]).code == 0


def test_link_down_cuts_the_nic_live(lab: dict[str, str], prepared_host: TestHost, kvmhub: Runner) -> None:
    r = kvmhub("nic", "set", "nb", "0", "--link", "down")
    assert r.code == 0 and "applied live" in r.err, r.err
    try:
        assert guest_run(prepared_host, "na", ["/bin/ping", "-c", "2", "-W", "2", lab["nb"]]).code != 0
    finally:
        assert kvmhub("nic", "set", "nb", "0", "--link", "up").code == 0
    assert guest_run(prepared_host, "na", ["/bin/ping", "-c", "2", "-W", "5", lab["nb"]]).code == 0


_SSH_BANNER = (
    "import socket,sys\n"
    "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
    "print(s.recv(200).decode(errors='replace').strip())\n"
)


_SINK = (
    "import socket,sys,time\n"
    "srv=socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(1); srv.settimeout(120)\n"
    "c,_=srv.accept(); n=0; t0=None\n"
    "while True:\n"
    "    b=c.recv(65536)\n"
    "    if t0 is None: t0=time.monotonic()\n"
    "    if not b: break\n"
    "    n+=len(b)\n"
    "print(n, time.monotonic()-(t0 or time.monotonic()))\n"
)


def _upload_seconds(host: TestHost, vm: str, gateway: str, port: int, mib: int = 2) -> float:
    """Seconds the guest takes to send `mib` MiB to a receiver in the test host's namespace."""
    sink = host.popen([sys.executable, "-c", _SINK, gateway, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        send = f"dd if=/dev/zero bs=64k count={mib * 16} 2>/dev/null | nc {gateway} {port}"
        guest_run(host, vm, ["/bin/sh", "-c", send], timeout=180)
        out, _ = sink.communicate(timeout=180)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    received, seconds = out.split()
    assert int(received) == mib * 1024**2
    return float(seconds)


def test_bandwidth_limit_slows_a_transfer(lab: dict[str, str], prepared_host: TestHost, kvmhub: Runner) -> None:
    gateway = str(next(ipaddress.ip_network(SUBNET).hosts()))
    r = kvmhub("set", "na", "--net-bw", "0:0/256K")
    if r.code == 5 and "sch_sfq" in r.err:
        pytest.skip("the host kernel lacks traffic-control modules (sch_htb/sch_sfq/act_police) for bandwidth limits")
    assert r.code == 0, r.err
    try:
        limited = _upload_seconds(prepared_host, "na", gateway, 5002)
    finally:
        assert kvmhub("set", "na", "--net-bw", "0:0/0").code == 0
    free = _upload_seconds(prepared_host, "na", gateway, 5003)
    # 2 MiB at 256 KiB/s takes about 8 s; unlimited it is several times faster even under TCG
    assert limited > 4.0 and limited > 2 * free, (limited, free)
