"""A VM's firewall: a libvirt nwfilter on each of its NICs, changed live.

Policies: ``clean-traffic`` (libvirt's anti-spoofing: no forged MAC, IP or ARP), ``allow:22,80/tcp``
(clean-traffic plus: inbound only replies, DHCP and new connections to those ports), ``off``.
"""

from __future__ import annotations

from kvmhub.hv import Hypervisor
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import nwfilter as hv_nwfilter
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.services.vm import lifecycle as vms
from kvmhub.xml import nwfilter as xml_nwfilter
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.interface import interface_to_xml
from kvmhub.xml.network import network_from_xml


def check_policy(policy: str) -> None:
    """Refuse (InvalidInput) a policy `set_policy` would not understand, before anything changes."""
    xml_nwfilter.parse_policy(policy)


def filter_for(hv: Hypervisor, policy: str) -> str | None:
    """The filter name a policy maps to, defining kvmhub's allow-list filter when needed."""
    parsed = xml_nwfilter.parse_policy(policy)
    if parsed is None:
        return None
    kind, ports, proto = parsed
    if kind == xml_nwfilter.BUILTIN:
        return xml_nwfilter.BUILTIN
    name = xml_nwfilter.filter_name(ports, proto)
    hv_nwfilter.define_filter(hv, xml_nwfilter.allow_filter_xml(ports, proto))
    return name


def set_policy(hv: Hypervisor, vm: str, policy: str) -> bool:
    """Apply `policy` to every NIC of the VM; True when applied live (the VM runs)."""
    dom = vms.get(hv, vm)
    live = False
    with Operation(hv, "vm.firewall", vm, locks=[LockSpec("vm", vm)]) as op:
        name = filter_for(hv, policy)
        for nic in domain_from_xml(dom.xml(inactive=True)).nics:
            nic.filter = name
            # with its address given, libvirt applies the filter at once instead of learning the IP first
            ip = _reserved_ip(hv, nic.network, nic.mac) if name else None
            nic.filter_params = {"IP": ip} if ip else {}
            op.add(f"filter {name or 'off'} on NIC {nic.mac}")  # a live change, not undone
            live = dom.update_device(interface_to_xml(nic)) or live
        op.success()
    return live


def _reserved_ip(hv: Hypervisor, network: str | None, mac: str | None) -> str | None:
    if not (network and mac):
        return None

    facts = network_from_xml(hv_networks.lookup_network(hv, network).xml())
    return next((h.ip for h in facts.dhcp_hosts if h.mac.lower() == mac.lower()), None)


def policy_of(filter_name: str | None) -> str:
    """The policy text `show` prints for a NIC's filter."""
    if filter_name is None:
        return "off"
    if filter_name.startswith("kvmhub-allow-"):
        _, _, rest = filter_name.partition("kvmhub-allow-")
        proto, _, ports = rest.partition("-")
        return f"allow:{ports.replace('-', ',').replace('_', '-')}/{proto}"
    return filter_name
