"""``<network>``: libvirt virtual networks (a bridge, optional NAT, dnsmasq DHCP and DNS)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, child_text, expect_root, make, parse, serialize, sub, text_of


@dataclass(frozen=True)
class NetworkFacts:
    """The fields kvmhub reads from a network's XML.

    ``mode`` is libvirt's forward mode ('nat', 'route', 'open', 'bridge'...) or 'isolated' when the
    network has no ``<forward>``.
    """

    name: str
    mode: str
    subnet: ipaddress.IPv4Network | None = None
    dhcp_range: tuple[str, str] | None = None
    bridge: str | None = None
    domain: str | None = None
    subnet6: ipaddress.IPv6Network | None = None
    dev: str | None = None
    dhcp_hosts: tuple[DhcpHost, ...] = ()
    dns_hosts: tuple[DnsHost, ...] = ()


@dataclass(frozen=True)
class DhcpHost:
    """A static DHCP reservation: this MAC always gets this IP."""

    mac: str
    ip: str
    name: str | None = None


@dataclass(frozen=True)
class DnsHost:
    """A name dnsmasq answers for the network: ip -> hostnames."""

    ip: str
    names: tuple[str, ...]


def _check_range(name: str, subnet: ipaddress.IPv4Network, dhcp_range: tuple[str, str]) -> None:
    gateway = next(subnet.hosts())
    try:
        start, end = (ipaddress.IPv4Address(a) for a in dhcp_range)
    except ValueError as exc:
        raise InvalidInput(f"network {name!r}: DHCP range {dhcp_range} is not two IPv4 addresses") from exc
    usable = [a for a in (start, end) if a in subnet and a not in (subnet.network_address, gateway)]
    if len(usable) != 2 or subnet.broadcast_address in (start, end) or start > end:
        raise InvalidInput(
            f"network {name!r}: DHCP range {start}-{end} does not fit {subnet}",
            cause=f"the range must lie inside {subnet}, start <= end, and leave out the gateway {gateway}",
            hint=f"e.g. {gateway + 99}-{min(gateway + 199, subnet.broadcast_address - 1)}",
        )


Mode = Literal["isolated", "nat", "routed", "open", "bridge", "direct"]
_FORWARD = {"nat": "nat", "routed": "route", "open": "open"}


def network_to_xml(
    name: str,
    mode: Mode,
    subnet: ipaddress.IPv4Network | None,
    dhcp_range: tuple[str, str] | None = None,
    bridge: str | None = None,
    domain: str | None = None,
    *,
    subnet6: ipaddress.IPv6Network | None = None,
    dev: str | None = None,
) -> str:
    """Network XML: the host takes the subnet's first address as gateway (and DNS).

    ``isolated`` guests reach only each other and the host; ``nat`` adds masqueraded outbound access,
    ``routed`` plain routing, ``open`` routing without any firewall rules from libvirt. ``bridge`` plugs
    guests into an existing host bridge (``bridge`` names it), ``direct`` into a host NIC through macvtap
    (``dev``); those two have no subnet of their own. ``domain`` is the DNS domain dnsmasq answers for.
    Raises InvalidInput for an unknown mode, a missing bridge/dev, a subnet smaller than /30, or a DHCP
    range outside the subnet.
    """
    if mode not in ("isolated", "nat", "routed", "open", "bridge", "direct"):
        raise InvalidInput(
            f"network {name!r}: unknown mode {mode!r}", hint="use nat, isolated, routed, open, bridge or direct"
        )
    root = make("network")
    sub(root, "name", text=name)
    if mode == "bridge":
        if not bridge:
            raise InvalidInput(f"network {name!r}: bridge mode needs the host bridge", hint="{opt:bridge} br0")
        sub(root, "forward", {"mode": "bridge"})
        sub(root, "bridge", {"name": bridge})
        return serialize(root)
    if mode == "direct":
        if not dev:
            raise InvalidInput(f"network {name!r}: direct mode needs the host NIC", hint="{opt:dev} eth0")
        forward = sub(root, "forward", {"mode": "bridge"})
        sub(forward, "interface", {"dev": dev})
        return serialize(root)
    if subnet is None and subnet6 is None:
        raise InvalidInput(f"network {name!r}: mode {mode} needs a subnet", hint="{opt:subnet} 10.10.0.0/24")
    if subnet is not None and subnet.prefixlen > 30:
        raise InvalidInput(
            f"network {name!r}: subnet {subnet} is too small",
            cause="it needs room for the gateway and at least one guest",
            hint="use a /30 or larger, e.g. 10.10.0.0/24",
        )
    if dhcp_range is not None and subnet is not None:
        _check_range(name, subnet, dhcp_range)
    if mode in _FORWARD:
        sub(root, "forward", {"mode": _FORWARD[mode]})
    # no spanning tree: the ports are VMs' taps, and with STP a new port (a NIC plugged in) waits ~4 s to forward
    sub(root, "bridge", {**({"name": bridge} if bridge is not None else {}), "stp": "off", "delay": "0"})
    if domain is not None:
        # localOnly: dnsmasq answers for the domain itself instead of forwarding it upstream.
        sub(root, "domain", {"name": domain, "localOnly": "yes"})
    if subnet is not None:
        ip = sub(root, "ip", {"address": str(next(subnet.hosts())), "prefix": str(subnet.prefixlen)})
        if dhcp_range is not None:
            dhcp = sub(ip, "dhcp")
            sub(dhcp, "range", {"start": dhcp_range[0], "end": dhcp_range[1]})
    if subnet6 is not None:
        if subnet6.prefixlen > 120:
            raise InvalidInput(f"network {name!r}: IPv6 subnet {subnet6} is too small", hint="use a /64")
        gw6 = subnet6.network_address + 1
        ip6 = sub(root, "ip", {"family": "ipv6", "address": str(gw6), "prefix": str(subnet6.prefixlen)})
        dhcp6 = sub(ip6, "dhcp")
        sub(dhcp6, "range", {"start": str(gw6 + 0xFF), "end": str(gw6 + 0x1FFF)})
    return serialize(root)


def dhcp_host_xml(host: DhcpHost) -> str:
    """One `<host>` of a network's DHCP section (for a live `net-update`)."""
    return serialize(make("host", {"mac": host.mac, "name": host.name, "ip": host.ip}))


def dns_host_xml(host: DnsHost) -> str:
    """One `<host>` of a network's DNS section: an address and the names it answers to."""
    root = make("host", {"ip": host.ip})
    for n in host.names:
        sub(root, "hostname", text=n)
    return serialize(root)


def _ipv4_element(root: Element) -> Element | None:
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") == "ipv4" and ip.get("address") is not None:
            return ip
    return None


def _subnet(ip: Element) -> ipaddress.IPv4Network:
    mask = ip.get("prefix") or ip.get("netmask") or "24"
    try:
        return ipaddress.IPv4Network(f"{ip.get('address')}/{mask}", strict=False)
    except ValueError as exc:
        raise InvalidInput("cannot read the network's address", original=str(exc)) from exc


def network_from_xml(xml: str) -> NetworkFacts:
    """Read a network's XML (``virNetwork.XMLDesc``): name, mode, IPv4 subnet, DHCP range, bridge, domain.

    Raises InvalidInput if the XML is malformed, not a network, or has an unreadable address.
    """
    root = parse(xml, "network")
    expect_root(root, "network", "network")
    forward = root.find("forward")
    ip = _ipv4_element(root)
    dhcp = ip.find("dhcp/range") if ip is not None else None
    dhcp_range = None
    if dhcp is not None and dhcp.get("start") is not None and dhcp.get("end") is not None:
        dhcp_range = (dhcp.get("start", ""), dhcp.get("end", ""))
    bridge = root.find("bridge")
    domain = root.find("domain")
    ip6 = next((e for e in root.iterfind("ip") if e.get("family") == "ipv6"), None)
    subnet6 = None
    if ip6 is not None and ip6.get("address"):
        subnet6 = ipaddress.IPv6Network(f"{ip6.get('address')}/{ip6.get('prefix', '64')}", strict=False)
    iface = forward.find("interface") if forward is not None else None
    return NetworkFacts(
        name=child_text(root, "name") or "",
        mode=_mode(forward, bridge),
        subnet=_subnet(ip) if ip is not None else None,
        dhcp_range=dhcp_range,
        bridge=bridge.get("name") if bridge is not None else None,
        domain=domain.get("name") if domain is not None else None,
        subnet6=subnet6,
        dev=iface.get("dev") if iface is not None else None,
        dhcp_hosts=tuple(
            DhcpHost(h.get("mac", ""), h.get("ip", ""), h.get("name"))
            for h in (ip.iterfind("dhcp/host") if ip is not None else ())
        ),
        dns_hosts=tuple(
            DnsHost(h.get("ip", ""), tuple(text_of(n) for n in h.iterfind("hostname")))
            for h in root.iterfind("dns/host")
        ),
    )


def _mode(forward: Element | None, bridge: Element | None) -> str:
    """kvmhub's name for a network's mode, from libvirt's <forward>."""
    if forward is None:
        return "isolated"
    libvirt_mode = forward.get("mode", "nat")
    if libvirt_mode == "bridge":
        return "bridge" if forward.find("interface") is None else "direct"
    return {"route": "routed"}.get(libvirt_mode, libvirt_mode)


def network_bridge_from_xml(xml: str) -> str | None:
    """The host bridge a network's guests plug into (e.g. ``virbr0``); None if libvirt has not named one."""
    return network_from_xml(xml).bridge


def network_subnet_from_xml(xml: str) -> ipaddress.IPv4Network | None:
    """A network's IPv4 subnet (e.g. ``192.168.122.0/24``); None for a network without IPv4."""
    return network_from_xml(xml).subnet
