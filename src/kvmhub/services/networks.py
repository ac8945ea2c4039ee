"""Virtual networks: create, list, remove (NAT and isolated, with DHCP)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel

from kvmhub.errors import Conflict, InvalidInput, KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.validate import check_name
from kvmhub.xml import network as xml_network

Mode = Literal["nat", "isolated"]
DEFAULT_SUBNET = ipaddress.IPv4Network("192.168.122.0/24")


class NetworkInfo(BaseModel):
    name: str
    active: bool
    autostart: bool
    mode: str
    bridge: str | None
    subnet: str | None
    vms: list[str] = []


def _info(net: hv_networks.Network, users: dict[str, list[str]]) -> NetworkInfo:
    facts = xml_network.network_from_xml(net.xml())
    return NetworkInfo(
        name=net.name,
        active=net.is_active(),
        autostart=net.autostart(),
        mode=facts.mode,
        bridge=facts.bridge,
        subnet=str(facts.subnet) if facts.subnet else None,
        vms=users.get(net.name, []),
    )


def _users(hv: Hypervisor) -> dict[str, list[str]]:
    """Network name -> names of VMs with a NIC on it."""
    from kvmhub.xml.domain import domain_from_xml

    out: dict[str, list[str]] = {}
    for dom in hv_domains.list_all(hv):
        try:
            spec = domain_from_xml(dom.xml(inactive=True))
        except KvmhubError:
            continue
        for nic in spec.nics:
            if nic.network:
                out.setdefault(nic.network, []).append(dom.name)
    return out


def list_networks(hv: Hypervisor) -> list[NetworkInfo]:
    users = _users(hv)
    return [_info(n, users) for n in hv_networks.list_networks(hv)]


def show(hv: Hypervisor, name: str) -> NetworkInfo:
    return _info(hv_networks.lookup_network(hv, name), _users(hv))


def _taken_subnets(hv: Hypervisor) -> dict[str, ipaddress.IPv4Network]:
    out = {}
    for net in hv_networks.list_networks(hv):
        subnet = xml_network.network_subnet_from_xml(net.xml())
        if subnet is not None:
            out[net.name] = subnet
    return out


def _pick_subnet(taken: dict[str, ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for third in range(100, 255):
        candidate = ipaddress.IPv4Network(f"192.168.{third}.0/24")
        if not any(candidate.overlaps(t) for t in taken.values()):
            return candidate
    raise Conflict("no free /24 left in 192.168.100-254.0", hint="pass --subnet CIDR")


def create(
    hv: Hypervisor,
    name: str,
    *,
    mode: Mode = "isolated",
    subnet: str | None = None,
    domain: str | None = None,
    autostart: bool = True,
) -> NetworkInfo:
    """Define and start a libvirt network with DHCP over the subnet (picked when not given)."""
    check_name(name, "network")
    if mode not in ("nat", "isolated"):
        raise InvalidInput(f"unknown network mode {mode!r}", hint="use --mode nat or --mode isolated")
    if hv_networks.network_exists(hv, name):
        raise Conflict(f"a network named {name!r} already exists", hint="`kvmhub net ls`")
    taken = _taken_subnets(hv)
    if subnet is None:
        net4 = _pick_subnet(taken)
    else:
        try:
            net4 = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"invalid subnet {subnet!r}: {exc}", hint="for example 10.20.0.0/24") from None
        if net4.num_addresses < 8:
            raise InvalidInput(f"subnet {subnet} is too small", hint="use a /29 or larger")
        for other, used in taken.items():
            if net4.overlaps(used):
                raise Conflict(
                    f"subnet {net4} overlaps network {other!r} ({used})",
                    hint="pick a free range, or remove that network",
                )
    if domain is not None:
        check_name(domain, "DNS domain")
    hosts = list(net4.hosts())
    dhcp = (str(hosts[1]), str(hosts[-1]))
    xml = xml_network.network_to_xml(name, mode, net4, dhcp, None, domain)
    net = hv_networks.define_network(hv, xml)
    try:
        net.start()
        if autostart:
            net.set_autostart(True)
    except BaseException:
        net.undefine()
        raise
    return _info(net, {})


def remove(hv: Hypervisor, name: str, *, force: bool = False) -> None:
    net = hv_networks.lookup_network(hv, name)
    users = _users(hv).get(name, [])
    if users and not force:
        raise Conflict(
            f"network {name!r} is used by VM(s): {', '.join(users)}",
            hint="remove those VMs' NICs first, or pass --force",
        )
    if net.is_active():
        net.stop()
    net.undefine()


def ensure_default(hv: Hypervisor) -> list[str]:
    """libvirt's usual `default` NAT network: defined, active, autostarted."""
    done = []
    if not hv_networks.network_exists(hv, "default"):
        taken = _taken_subnets(hv)
        subnet = DEFAULT_SUBNET if not any(DEFAULT_SUBNET.overlaps(t) for t in taken.values()) else None
        create(hv, "default", mode="nat", subnet=str(subnet) if subnet else None)
        return ["network default (NAT) defined and started"]
    net = hv_networks.lookup_network(hv, "default")
    if not net.is_active():
        net.start()
        done.append("network default started")
    if not net.autostart():
        net.set_autostart(True)
    return done
