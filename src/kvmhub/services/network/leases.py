"""Addresses and names of VMs on a network: static DHCP reservations and DNS entries, applied live.

A VM on a kvmhub network gets a reservation (its MAC -> an IP) and a DNS entry (that IP -> NAME and
NAME.DOMAIN), so the address is known before the guest boots and VMs find each other by name.
Removing the VM removes both.
"""

from __future__ import annotations

import ipaddress
import random

from pydantic import BaseModel

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor, host_files_here
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.ops.actions import Action
from kvmhub.ops.locks import LockSpec, hold
from kvmhub.ops.operation import Operation
from kvmhub.tools import dhcp_release
from kvmhub.xml import network as xml_network
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.network import DhcpHost, DnsHost


class LeaseInfo(BaseModel):
    network: str
    ip: str
    mac: str
    hostname: str | None
    kind: str  # reserved | dynamic
    expiry: int | None = None


def list_leases(hv: Hypervisor, network: str) -> list[LeaseInfo]:
    """Static reservations and dynamic DHCP leases of a network."""
    net = hv_networks.lookup_network(hv, network)
    facts = xml_network.network_from_xml(net.xml())
    out = [LeaseInfo(network=network, ip=h.ip, mac=h.mac, hostname=h.name, kind="reserved")
           for h in facts.dhcp_hosts]
    reserved = {h.mac.lower() for h in facts.dhcp_hosts}
    if net.is_active():
        for lease in net.leases():
            if lease.mac.lower() not in reserved:
                out.append(LeaseInfo(network=network, ip=lease.ip, mac=lease.mac, hostname=lease.hostname,
                                     kind="dynamic", expiry=lease.expiry))
    return sorted(out, key=lambda x: ipaddress.ip_address(x.ip))


def _vm_macs(hv: Hypervisor) -> dict[str, set[str]]:
    """Every VM's name -> the MAC addresses of its NICs, lower case (reads every definition)."""

    macs: dict[str, set[str]] = {}
    for dom in hv_domains.list_all(hv):
        try:
            spec = domain_from_xml(dom.xml(inactive=True))
        except KvmhubError:
            continue
        macs[dom.name] = {n.mac.lower() for n in spec.nics if n.mac}
    return macs


def used_macs(hv: Hypervisor) -> set[str]:
    """Every MAC address of every VM on the host."""
    return set().union(*_vm_macs(hv).values())


def vms_with_mac(hv: Hypervisor, mac: str) -> list[str]:
    """Names of the VMs (any state) with a NIC of this MAC address."""
    return sorted(vm for vm, macs in _vm_macs(hv).items() if mac.lower() in macs)


def new_mac(hv: Hypervisor, network: str | None = None) -> str:
    """A random QEMU-range MAC not in use: on `network` (its reservations and leases, one call), or
    when no network is given, on any VM of the host (reads every definition)."""
    if network is not None:
        net = hv_networks.lookup_network(hv, network)
        taken = {h.mac.lower() for h in xml_network.network_from_xml(net.xml()).dhcp_hosts}
        if net.is_active():
            taken |= {lease.mac.lower() for lease in net.leases()}
    else:
        taken = used_macs(hv)
    rng = random.SystemRandom()
    while True:
        mac = "52:54:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        if mac not in taken:
            return mac


def _facts(net: hv_networks.Network) -> xml_network.NetworkFacts:
    facts = xml_network.network_from_xml(net.xml())
    if facts.subnet is None:
        raise InvalidInput(
            f"network {net.name!r} has no IPv4 subnet kvmhub manages (mode {facts.mode})",
            cause="bridged and direct networks take addresses from the outside network's DHCP",
        )
    return facts


def _taken(net: hv_networks.Network, facts: xml_network.NetworkFacts) -> dict[str, str]:
    """IP -> who holds it (reservation or live lease)."""
    taken = {h.ip: f"reserved for {h.name or h.mac}" for h in facts.dhcp_hosts}
    if net.is_active():
        for lease in net.leases():
            taken.setdefault(lease.ip, f"leased to {lease.hostname or lease.mac}")
    return taken


def check_ip(net: hv_networks.Network, ip: str, mac: str | None = None) -> str:
    """Refuse an address outside the subnet, the gateway, or one another MAC holds."""
    facts = _facts(net)
    assert facts.subnet is not None
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise InvalidInput(f"{ip!r} is not an IPv4 address") from None
    gateway = next(facts.subnet.hosts())
    if addr not in facts.subnet or addr in (facts.subnet.network_address, facts.subnet.broadcast_address):
        raise InvalidInput(
            f"{ip} is outside network {net.name!r}",
            cause=f"its subnet is {facts.subnet}",
            hint=f"pick an address from {gateway + 1} to {facts.subnet.broadcast_address - 1}",
        )
    if addr == gateway:
        raise InvalidInput(f"{ip} is the gateway of network {net.name!r}", hint="pick another address")
    holders = {h.ip: h.mac.lower() for h in facts.dhcp_hosts}
    if mac is None or holders.get(ip) != mac.lower():
        who = _taken(net, facts).get(ip)
        if who:
            raise Conflict(f"{ip} on network {net.name!r} is already {who}", hint="{cmd:net lease ls NET}")
    return ip


def pick_ip(net: hv_networks.Network) -> str:
    """The first free address of the network's DHCP range (or subnet)."""
    facts = _facts(net)
    assert facts.subnet is not None
    taken = _taken(net, facts)
    if facts.dhcp_range:
        start, end = (ipaddress.IPv4Address(a) for a in facts.dhcp_range)
    else:
        hosts = list(facts.subnet.hosts())
        start, end = hosts[1], hosts[-1]
    addr = start
    while addr <= end:
        if str(addr) not in taken:
            return str(addr)
        addr += 1
    raise Conflict(f"network {net.name!r} has no free address left", hint="remove VMs or make a bigger network")


def names_for(vm: str, domain: str | None) -> tuple[str, ...]:
    return (vm, f"{vm}.{domain}") if domain else (vm,)


def register(hv: Hypervisor, network: str, vm: str, mac: str, ip: str) -> None:
    """Reserve `ip` for `mac` and publish `vm` (and vm.DOMAIN) for it in the network's DNS."""
    net = hv_networks.lookup_network(hv, network)
    facts = _facts(net)
    check_ip(net, ip, mac)
    net.add_dhcp_host(xml_network.dhcp_host_xml(DhcpHost(mac=mac, ip=ip, name=vm)))
    try:
        net.add_dns_host(xml_network.dns_host_xml(DnsHost(ip=ip, names=names_for(vm, facts.domain))))
    except BaseException:
        net.remove_dhcp_host(xml_network.dhcp_host_xml(DhcpHost(mac=mac, ip=ip, name=vm)))
        raise


def register_free(hv: Hypervisor, network: str, vm: str, mac: str) -> str:
    """Reserve the next free address for `mac` (see :func:`register`); returns it.

    Picking and reserving hold a lock per network, so creates running side by side get different addresses.
    """
    with hold(hv.uri, [LockSpec("network", network)]):
        ip = pick_ip(hv_networks.lookup_network(hv, network))
        register(hv, network, vm, mac, ip)
    return ip


def unregister(hv: Hypervisor, network: str, mac: str) -> list[str]:
    """Remove the reservation of `mac` and the DNS entry of its address; returns what was removed."""
    try:
        net = hv_networks.lookup_network(hv, network)
    except KvmhubError:
        return []
    facts = xml_network.network_from_xml(net.xml())
    removed = []
    released: set[str] = set()
    for host in facts.dhcp_hosts:
        if host.mac.lower() != mac.lower():
            continue
        net.remove_dhcp_host(xml_network.dhcp_host_xml(host))
        removed.append(f"{network}: reservation {host.ip}")
        released.add(host.ip)
        for dns in facts.dns_hosts:
            if dns.ip == host.ip:
                net.remove_dns_host(xml_network.dns_host_xml(dns))
                removed.append(f"{network}: DNS {', '.join(dns.names)}")
    _drop_leases(hv, net, facts, mac, released)
    return removed


def _drop_leases(hv: Hypervisor, net: hv_networks.Network, facts: xml_network.NetworkFacts, mac: str,
                 ips: set[str]) -> None:
    """Make dnsmasq forget ``mac``'s leases (its reserved ``ips`` and any it shows), so their addresses can go to
    the next VM at once: dnsmasq gives no address leased to another MAC, even one reserved (see
    :mod:`kvmhub.tools.dhcp_release`). Only for a network on this host, whose bridge runs here."""
    if not facts.bridge or not host_files_here(hv.uri) or not net.is_active():
        return
    # a lease libvirt shows is dropped too (an address the guest got some other way); a fresh one libvirt does not
    # show yet is the reserved address, dropped anyway
    try:
        ips = ips | {lease.ip for lease in net.leases() if lease.mac.lower() == mac.lower()}
    except KvmhubError:
        pass  # the reserved addresses are still dropped; the reservation itself is already gone
    for ip in sorted(ips):
        dhcp_release.release(facts.bridge, ip, mac.lower())


def remove_reservation(hv: Hypervisor, network: str, which: str, force: bool = False) -> list[str]:
    """`net lease rm NET (MAC|IP|NAME)`: drop a static reservation and its DNS entry; returns what was removed.

    Refused (Conflict, naming the VMs) while a VM with the reservation's MAC exists, unless ``force``:
    removing the VM (`kvmhub rm`) releases its reservation itself. NotFound when nothing matches.
    """
    with Operation(hv, "lease.rm", network, locks=[LockSpec("network", network)]) as op:
        removed = _remove_reservation(hv, network, which, force, op)
        op.success()
    return removed


def _remove_reservation(hv: Hypervisor, network: str, which: str, force: bool, op: Operation) -> list[str]:
    net = hv_networks.lookup_network(hv, network)
    key = which.strip().lower()
    hosts = xml_network.network_from_xml(net.xml()).dhcp_hosts
    found = [h for h in hosts if key in (h.mac.lower(), h.ip, (h.name or "").lower())]
    if not found:
        raise NotFound(f"network {network!r} has no reservation for {which!r}",
                       hint=f"`kvmhub net lease ls {network}` lists them")
    if len({h.mac.lower() for h in found}) > 1:
        raise InvalidInput(f"{which!r} matches several reservations on network {network!r}: "
                           + ", ".join(f"{h.ip} ({h.mac})" for h in found), hint="name the one to remove by MAC")
    mac = found[0].mac
    if not force and (owners := vms_with_mac(hv, mac)):
        raise Conflict(
            f"the reservation {found[0].ip} ({mac}) on network {network!r} belongs to VM {', '.join(owners)}",
            cause="a VM with that MAC address exists; `kvmhub rm` releases its reservation with it",
            hint="add --force to remove only the reservation (the VM keeps its NIC and asks DHCP anew)",
        )
    op.add(f"release {found[0].ip} ({mac}) on {network}")  # a removal is not undone
    return unregister(hv, network, mac)


def reserve_for_vm(hv: Hypervisor, network: str, vm: str, ip: str) -> LeaseInfo:
    """`net lease add NET --vm NAME --ip A`: pin the VM's NIC on that network to an address."""

    dom = hv_domains.lookup(hv, vm)
    nic = next((n for n in domain_from_xml(dom.xml(inactive=True)).nics if n.network == network), None)
    if nic is None or not nic.mac:
        raise InvalidInput(f"VM {vm} has no NIC on network {network!r}")
    with Operation(hv, "lease.add", network, locks=[LockSpec("network", network), LockSpec("vm", vm)]) as op:
        check_ip(hv_networks.lookup_network(hv, network), ip, nic.mac)
        op.add(f"release the old reservation of {nic.mac} on {network}")
        unregister(hv, network, nic.mac)
        op.add(f"reserve {ip} for {nic.mac} on {network}",
               Action("lease.release", {"network": network, "mac": nic.mac}))
        register(hv, network, vm, nic.mac, ip)
        op.success()
    return LeaseInfo(network=network, ip=ip, mac=nic.mac, hostname=vm, kind="reserved")
