"""Virtual networks through libvirt's network API, every call bounded and translated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libvirt

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv.connection import Hypervisor


@dataclass(frozen=True)
class Lease:
    mac: str
    ip: str
    prefix: int
    hostname: str | None
    expiry: int


class Network:
    def __init__(self, hv: Hypervisor, net: Any) -> None:
        self.hv = hv
        self._net = net
        self.name: str = net.name()
        self.uuid: str = net.UUIDString()  # known to the handle: no libvirt round trip

    def _call(self, what: str, fn: Any, *args: Any, retry: bool = False) -> Any:
        """``retry``: a read (see :meth:`Hypervisor.call`)."""
        return self.hv.call(fn, *args, what=f"{what} (network {self.name})", retry=retry, reconnect=False)

    def is_active(self) -> bool:
        return bool(self._call("reading state", self._net.isActive, retry=True))

    def start(self) -> None:
        self._call("starting", self._net.create)

    def stop(self) -> None:
        self._call("stopping", self._net.destroy)

    def undefine(self) -> None:
        self._call("removing", self._net.undefine)

    def autostart(self) -> bool:
        return bool(self._call("reading autostart", self._net.autostart, retry=True))

    def set_autostart(self, on: bool) -> None:
        self._call("setting autostart", self._net.setAutostart, 1 if on else 0)

    def xml(self) -> str:
        return str(self._call("reading definition", self._net.XMLDesc, 0, retry=True))

    def _update(self, command: int, section: int, xml: str, what: str) -> None:
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if self.is_active():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        self._call(what, self._net.update, command, section, -1, xml, flags)

    def add_dhcp_host(self, xml: str) -> None:
        """Add a static DHCP reservation, live (when running) and persistent."""
        self._update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                     xml, "adding a DHCP reservation")

    def remove_dhcp_host(self, xml: str) -> None:
        self._update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                     xml, "removing a DHCP reservation")

    def add_dns_host(self, xml: str) -> None:
        """Add names for an address to the network's DNS, live (when running) and persistent."""
        self._update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_SECTION_DNS_HOST,
                     xml, "adding a DNS entry")

    def remove_dns_host(self, xml: str) -> None:
        self._update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, libvirt.VIR_NETWORK_SECTION_DNS_HOST,
                     xml, "removing a DNS entry")

    def leases(self) -> list[Lease]:
        rows = self._call("reading DHCP leases", self._net.DHCPLeases, retry=True)
        return [
            Lease(
                mac=str(r.get("mac", "")),
                ip=str(r.get("ipaddr", "")),
                prefix=int(r.get("prefix", 0)),
                hostname=r.get("hostname"),
                expiry=int(r.get("expirytime", 0)),
            )
            for r in rows or []
        ]


def not_found(name: str) -> NotFound:
    """The error for a missing network (also given for one the caller may not see: the same words)."""
    return NotFound(f"no network {name!r}", hint="list them: {cmd:net ls}; make one: {cmd:net create NAME --mode "
                    "isolated}", code="network.not_found")


def lookup_network(hv: Hypervisor, name: str) -> Network:
    try:
        net = hv.call(hv.conn.networkLookupByName, name, what=f"looking up network {name!r}", retry=True)
    except NotFound:
        raise not_found(name) from None
    return Network(hv, net)


def list_networks(hv: Hypervisor) -> list[Network]:
    nets = hv.call(hv.conn.listAllNetworks, 0, what="listing networks", retry=True)
    return [Network(hv, n) for n in nets]


def define_network(hv: Hypervisor, xml: str) -> Network:
    return Network(hv, hv.call(hv.conn.networkDefineXML, xml, what="defining the network"))


def network_exists(hv: Hypervisor, name: str) -> bool:
    try:
        lookup_network(hv, name)
    except KvmhubError:
        return False
    return True
