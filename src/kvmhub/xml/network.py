"""``<network>``: libvirt virtual networks (a bridge, optional NAT, dnsmasq DHCP and DNS)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from kvmhub.errors import InvalidInput
from kvmhub.xml._util import Element, child_text, expect_root, make, parse, serialize, sub


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


def network_to_xml(
    name: str,
    mode: Literal["isolated", "nat"],
    subnet: ipaddress.IPv4Network,
    dhcp_range: tuple[str, str] | None = None,
    bridge: str | None = None,
    domain: str | None = None,
) -> str:
    """Minimal network XML: the host takes the subnet's first address as gateway (and DNS).

    ``isolated`` guests reach only each other and the host; ``nat`` adds masqueraded outbound access.
    ``bridge`` names the host bridge (libvirt picks ``virbrN`` if None); ``domain`` is the DNS domain
    dnsmasq answers for. Raises InvalidInput for an unknown mode, a subnet smaller than /30, or a DHCP
    range outside the subnet.
    """
    if mode not in ("isolated", "nat"):
        raise InvalidInput(f"network {name!r}: unknown mode {mode!r}", hint="use 'isolated' or 'nat'")
    if subnet.prefixlen > 30:
        raise InvalidInput(
            f"network {name!r}: subnet {subnet} is too small",
            cause="it needs room for the gateway and at least one guest",
            hint="use a /30 or larger, e.g. 10.10.0.0/24",
        )
    if dhcp_range is not None:
        _check_range(name, subnet, dhcp_range)
    root = make("network")
    sub(root, "name", text=name)
    if mode == "nat":
        sub(root, "forward", {"mode": "nat"})
    if bridge is not None:
        sub(root, "bridge", {"name": bridge, "stp": "on", "delay": "0"})
    if domain is not None:
        # localOnly: dnsmasq answers for the domain itself instead of forwarding it upstream.
        sub(root, "domain", {"name": domain, "localOnly": "yes"})
    ip = sub(root, "ip", {"address": str(next(subnet.hosts())), "prefix": str(subnet.prefixlen)})
    if dhcp_range is not None:
        dhcp = sub(ip, "dhcp")
        sub(dhcp, "range", {"start": dhcp_range[0], "end": dhcp_range[1]})
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
    return NetworkFacts(
        name=child_text(root, "name") or "",
        mode="isolated" if forward is None else forward.get("mode", "nat"),
        subnet=_subnet(ip) if ip is not None else None,
        dhcp_range=dhcp_range,
        bridge=bridge.get("name") if bridge is not None else None,
        domain=domain.get("name") if domain is not None else None,
    )


def network_bridge_from_xml(xml: str) -> str | None:
    """The host bridge a network's guests plug into (e.g. ``virbr0``); None if libvirt has not named one."""
    return network_from_xml(xml).bridge


def network_subnet_from_xml(xml: str) -> ipaddress.IPv4Network | None:
    """A network's IPv4 subnet (e.g. ``192.168.122.0/24``); None for a network without IPv4."""
    return network_from_xml(xml).subnet
