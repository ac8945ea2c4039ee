"""cloud-init network-config, checked before a seed is made: version 2 (netplan style) or version 1.

cloud-init reads the NoCloud ``network-config`` file with either layout, bare or under a top-level
``network:`` key. The checks are structural: the keys cloud-init and netplan know (a typo is refused with
the nearest known key), addresses in CIDR form, gateways and name servers as IP addresses, MAC addresses
as quoted strings (an unquoted ``52:54:00:12:34:56`` is a YAML 1.1 base-60 integer), references between
bonds, bridges, VLANs and their links. Every error names the file, the line and the path of the value.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from kvmhub.errors import InvalidInput
from kvmhub.tools import yaml_lines
from kvmhub.tools.yaml_lines import Map, Seq

__all__ = ["NetworkConfig", "parse_network_config"]

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")

_V2_TOP = {"version", "renderer", "ethernets", "bonds", "bridges", "vlans", "wifis"}
_V2_DEVICE = {
    "renderer", "dhcp4", "dhcp6", "dhcp4-overrides", "dhcp6-overrides", "dhcp-identifier", "accept-ra",
    "addresses", "gateway4", "gateway6", "nameservers", "routes", "routing-policy", "mtu", "ipv6-mtu",
    "macaddress", "optional", "optional-addresses", "critical", "link-local", "ipv6-privacy",
    "ipv6-address-generation", "ipv6-address-token", "emit-lldp", "activation-mode",
}  # fmt: skip
_V2_ETHERNET = _V2_DEVICE | {
    "match", "set-name", "wakeonlan", "receive-checksum-offload", "transmit-checksum-offload",
    "tcp-segmentation-offload", "tcp6-segmentation-offload", "generic-segmentation-offload",
    "generic-receive-offload", "large-receive-offload", "virtual-function-count", "embedded-switch-mode",
}  # fmt: skip
_V2_KIND_KEYS = {
    "ethernets": _V2_ETHERNET,
    "bonds": _V2_DEVICE | {"interfaces", "parameters"},
    "bridges": _V2_DEVICE | {"interfaces", "parameters"},
    "vlans": _V2_DEVICE | {"id", "link"},
}
_V2_MATCH = {"name", "macaddress", "driver"}
_V2_ROUTE = {"to", "via", "from", "on-link", "metric", "type", "scope", "table", "mtu", "congestion-window",
             "advertised-receive-window"}  # fmt: skip
_V2_BOOLS = ("dhcp4", "dhcp6", "accept-ra", "optional", "critical", "wakeonlan", "ipv6-privacy")

_V1_TYPES = {"physical", "bond", "bridge", "vlan", "nameserver", "route"}
_V1_SUBNET_TYPES = {
    "dhcp", "dhcp4", "dhcp6", "static", "static6", "manual", "ipv6_dhcpv6-stateful", "ipv6_dhcpv6-stateless",
    "ipv6_slaac",
}  # fmt: skip


@dataclass(frozen=True)
class NetworkConfig:
    """A checked network-config: the YAML written to the seed and the static IPv4 addresses it sets."""

    text: str
    version: int
    static_ipv4: tuple[str, ...] = ()


class _Checker:
    def __init__(self, what: str) -> None:
        self.what = what
        self.static_ipv4: list[str] = []

    def fail(self, parent: Any, key: Any, path: str, problem: str, hint: str | None = None) -> NoReturn:
        line = yaml_lines.line_of(parent, key) or getattr(parent, "line", 0)
        at = f", line {line}" if line else ""
        raise InvalidInput(f"{self.what}{at}: {path} {problem}", hint=hint)

    def keys(self, value: Map, known: Iterable[str], path: str) -> None:
        known = set(known)
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(sorted(known))
                self.fail(value, key, _join(path, key), "is not a key cloud-init knows here", hint)

    def mapping(self, parent: Any, key: Any, path: str) -> Map:
        value = parent[key]
        if not isinstance(value, Map):
            self.fail(parent, key, path, f"must be a mapping (key: value lines), not {_kind(value)}")
        return value

    def sequence(self, parent: Any, key: Any, path: str) -> Seq:
        value = parent[key]
        if not isinstance(value, Seq):
            self.fail(parent, key, path, f"must be a list, not {_kind(value)}", "write it as [a, b] or '- a' lines")
        return value

    def string(self, parent: Any, key: Any, path: str) -> str:
        value = parent[key]
        if not isinstance(value, str) or not value:
            self.fail(parent, key, path, f"must be a non-empty string, not {_kind(value)}")
        return value

    def boolean(self, parent: Any, key: Any, path: str) -> None:
        if not isinstance(parent[key], bool):
            self.fail(parent, key, path, f"must be true or false, not {parent[key]!r}")

    def integer(self, parent: Any, key: Any, path: str, low: int, high: int) -> int:
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(parent, key, path, f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    def mac(self, parent: Any, key: Any, path: str) -> None:
        value = parent[key]
        if isinstance(value, int) and not isinstance(value, bool):
            self.fail(parent, key, path, "was read as a number (YAML 1.1 base 60)",
                      "quote MAC addresses: macaddress: '52:54:00:12:34:56'")
        if not isinstance(value, str) or not _MAC_RE.match(value):
            self.fail(parent, key, path, f"{value!r} is not a MAC address", "write it as '52:54:00:12:34:56'")

    def ip(self, parent: Any, key: Any, path: str, version: int | None = None) -> str:
        value = parent[key]
        try:
            addr = ipaddress.ip_address(str(value)) if isinstance(value, str) else None
        except ValueError:
            addr = None
        if addr is None or (version is not None and addr.version != version):
            kind = f"an IPv{version} address" if version else "an IP address"
            self.fail(parent, key, path, f"{value!r} is not {kind}")
        return str(addr)

    def cidr(self, parent: Any, key: Any, path: str, *, allow_default: bool = False) -> None:
        value = parent[key]
        if allow_default and value == "default":
            return
        text = value if isinstance(value, str) else ""
        try:
            iface = ipaddress.ip_interface(text) if "/" in text else None
        except ValueError:
            iface = None
        if iface is None:
            missing = " (the prefix length is missing)" if text and "/" not in text else ""
            self.fail(parent, key, path, f"{value!r} is not an address with a prefix length{missing}",
                      "write it as ADDRESS/PREFIX, for example 10.77.0.50/24")

    # ------------------------------------------------------------------ version 2

    def v2(self, doc: Map) -> None:
        self.keys(doc, _V2_TOP, "")
        if "renderer" in doc:
            self.string(doc, "renderer", "renderer")
        if "wifis" in doc:
            self.mapping(doc, "wifis", "wifis")
        names: set[str] = set()
        for kind in ("ethernets", "bonds", "bridges", "vlans"):
            if kind in doc and doc[kind] is not None:
                names.update(str(k) for k in self.mapping(doc, kind, kind))
        for kind in ("ethernets", "bonds", "bridges", "vlans"):
            if kind not in doc or doc[kind] is None:
                continue
            devices = self.mapping(doc, kind, kind)
            for dev_id in devices:
                path = _join(kind, dev_id)
                if not isinstance(dev_id, str) or not _IFNAME_RE.match(dev_id):
                    self.fail(devices, dev_id, path, "is not an interface name (1 to 15 characters, no '/', ':' "
                              "or spaces)")
                if devices[dev_id] is None:
                    devices[dev_id] = Map()
                self.v2_device(kind, self.mapping(devices, dev_id, path), path, names)

    def v2_device(self, kind: str, dev: Map, path: str, names: set[str]) -> None:
        self.keys(dev, _V2_KIND_KEYS[kind], path)
        for key in _V2_BOOLS:
            if key in dev:
                self.boolean(dev, key, _join(path, key))
        if "match" in dev:
            match = self.mapping(dev, "match", _join(path, "match"))
            self.keys(match, _V2_MATCH, _join(path, "match"))
            if "macaddress" in match:
                self.mac(match, "macaddress", _join(path, "match.macaddress"))
            if "name" in match:
                self.string(match, "name", _join(path, "match.name"))
        if "set-name" in dev:
            if "match" not in dev:
                self.fail(dev, "set-name", _join(path, "set-name"), "needs a match (by macaddress or name)",
                          "add match: {macaddress: '52:54:00:...'} to say which NIC to rename")
            name = self.string(dev, "set-name", _join(path, "set-name"))
            if not _IFNAME_RE.match(name):
                self.fail(dev, "set-name", _join(path, "set-name"), f"{name!r} is not an interface name")
        if "macaddress" in dev:
            self.mac(dev, "macaddress", _join(path, "macaddress"))
        for key, low in (("mtu", 68), ("ipv6-mtu", 1280)):
            if key in dev:
                self.integer(dev, key, _join(path, key), low, 65535)
        if "addresses" in dev:
            self.v2_addresses(dev, path)
        if "gateway4" in dev:
            self.ip(dev, "gateway4", _join(path, "gateway4"), 4)
        if "gateway6" in dev:
            self.ip(dev, "gateway6", _join(path, "gateway6"), 6)
        if "nameservers" in dev:
            ns_path = _join(path, "nameservers")
            ns = self.mapping(dev, "nameservers", ns_path)
            self.keys(ns, {"addresses", "search"}, ns_path)
            if "addresses" in ns:
                servers = self.sequence(ns, "addresses", _join(ns_path, "addresses"))
                for i in range(len(servers)):
                    self.ip(servers, i, f"{ns_path}.addresses[{i}]")
            if "search" in ns:
                domains = self.sequence(ns, "search", _join(ns_path, "search"))
                for i in range(len(domains)):
                    self.string(domains, i, f"{ns_path}.search[{i}]")
        if "routes" in dev:
            routes = self.sequence(dev, "routes", _join(path, "routes"))
            for i in range(len(routes)):
                self.v2_route(routes, i, f"{path}.routes[{i}]")
        if "interfaces" in dev:
            members = self.sequence(dev, "interfaces", _join(path, "interfaces"))
            for i in range(len(members)):
                member = self.string(members, i, f"{path}.interfaces[{i}]")
                if member not in names:
                    self.fail(members, i, f"{path}.interfaces[{i}]", f"names {member!r}, which is not defined "
                              "under ethernets, bonds, bridges or vlans")
        if "parameters" in dev:
            self.mapping(dev, "parameters", _join(path, "parameters"))
        if kind == "vlans":
            for key in ("id", "link"):
                if key not in dev:
                    self.fail(dev, None, path, f"needs {key!r}", "a VLAN needs id: N and link: INTERFACE")
            self.integer(dev, "id", _join(path, "id"), 0, 4094)
            link = self.string(dev, "link", _join(path, "link"))
            if link not in names:
                self.fail(dev, "link", _join(path, "link"), f"names {link!r}, which is not defined")

    def v2_addresses(self, dev: Map, path: str) -> None:
        addresses = self.sequence(dev, "addresses", _join(path, "addresses"))
        for i, item in enumerate(addresses):
            item_path = f"{path}.addresses[{i}]"
            if isinstance(item, Map):  # netplan's long form: {ADDRESS/PREFIX: {lifetime: ..., label: ...}}
                if len(item) != 1:
                    self.fail(addresses, i, item_path, "must hold exactly one ADDRESS/PREFIX key")
                key = next(iter(item))
                self.cidr(item, key, item_path)
                text = str(key)
            else:
                self.cidr(addresses, i, item_path)
                text = str(item)
            iface = ipaddress.ip_interface(text)
            if iface.version == 4:
                self.static_ipv4.append(str(iface.ip))

    def v2_route(self, routes: Seq, i: int, path: str) -> None:
        route = self.mapping(routes, i, path)
        self.keys(route, _V2_ROUTE, path)
        if "to" not in route:
            self.fail(routes, i, path, "needs 'to' (a destination such as 0.0.0.0/0 or default)")
        self.cidr(route, "to", _join(path, "to"), allow_default=True)
        if "via" in route:
            self.ip(route, "via", _join(path, "via"))
        if "from" in route:
            self.ip(route, "from", _join(path, "from"))
        if "metric" in route:
            self.integer(route, "metric", _join(path, "metric"), 0, 2**32 - 1)
        if "on-link" in route:
            self.boolean(route, "on-link", _join(path, "on-link"))

    # ------------------------------------------------------------------ version 1

    def v1(self, doc: Map) -> None:
        self.keys(doc, {"version", "config"}, "")
        if "config" not in doc:
            self.fail(doc, "version", "config", "is missing", "version 1 lists its devices under config:")
        items = self.sequence(doc, "config", "config")
        for i in range(len(items)):
            path = f"config[{i}]"
            item = self.mapping(items, i, path)
            if "type" not in item:
                self.fail(items, i, path, "needs a type", "one of: " + ", ".join(sorted(_V1_TYPES)))
            kind = item["type"]
            if kind not in _V1_TYPES:
                self.fail(item, "type", _join(path, "type"), f"{kind!r} is not a version 1 type",
                          "one of: " + ", ".join(sorted(_V1_TYPES)))
            if kind in ("physical", "bond", "bridge", "vlan"):
                if "name" not in item:
                    self.fail(items, i, path, f"({kind}) needs a name")
                self.string(item, "name", _join(path, "name"))
            if "mac_address" in item:
                self.mac(item, "mac_address", _join(path, "mac_address"))
            if "mtu" in item:
                self.integer(item, "mtu", _join(path, "mtu"), 68, 65535)
            if "subnets" in item:
                subnets = self.sequence(item, "subnets", _join(path, "subnets"))
                for j in range(len(subnets)):
                    self.v1_subnet(subnets, j, f"{path}.subnets[{j}]")
            if kind == "nameserver" and "address" in item:
                servers = item["address"]
                if isinstance(servers, str):
                    self.ip(item, "address", _join(path, "address"))
                else:
                    servers = self.sequence(item, "address", _join(path, "address"))
                    for j in range(len(servers)):
                        self.ip(servers, j, f"{path}.address[{j}]")
            if kind == "route":
                for key in ("destination", "gateway"):
                    if key not in item:
                        self.fail(items, i, path, f"(route) needs {key!r}")
                self.ip(item, "gateway", _join(path, "gateway"))

    def v1_subnet(self, subnets: Seq, j: int, path: str) -> None:
        subnet = self.mapping(subnets, j, path)
        kind = subnet.get("type")
        if kind not in _V1_SUBNET_TYPES:
            self.fail(subnets, j, _join(path, "type"), f"{kind!r} is not a subnet type",
                      "one of: " + ", ".join(sorted(_V1_SUBNET_TYPES)))
        if kind in ("static", "static6"):
            if "address" not in subnet:
                self.fail(subnets, j, path, "(static) needs an address")
            text = subnet["address"]
            if "netmask" in subnet and isinstance(text, str) and "/" not in text:
                self.ip(subnet, "address", _join(path, "address"))
                self.ip(subnet, "netmask", _join(path, "netmask"))
                try:
                    text = str(ipaddress.ip_interface(f"{text}/{subnet['netmask']}"))
                except ValueError:
                    self.fail(subnet, "netmask", _join(path, "netmask"), f"{subnet['netmask']!r} is not a netmask")
            else:
                self.cidr(subnet, "address", _join(path, "address"))
            iface = ipaddress.ip_interface(text)
            if iface.version == 4:
                self.static_ipv4.append(str(iface.ip))
        if "gateway" in subnet:
            self.ip(subnet, "gateway", _join(path, "gateway"))
        if "dns_nameservers" in subnet:
            servers = self.sequence(subnet, "dns_nameservers", _join(path, "dns_nameservers"))
            for k in range(len(servers)):
                self.ip(servers, k, f"{path}.dns_nameservers[{k}]")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def parse_network_config(text: str, source: str) -> NetworkConfig:
    """Check a network-config document; ``source`` names it in errors (its file path).

    Returns the YAML to write into the seed (the same data, in block style) and the static IPv4
    addresses it assigns, in document order. Raises InvalidInput naming the line of the first problem.
    """
    what = f"network-config {source}"
    doc = yaml_lines.load(text, what)
    checker = _Checker(what)
    if not isinstance(doc, Map):
        raise InvalidInput(f"{what} must be a YAML mapping, not {_kind(doc)}",
                           hint="start it with: version: 2")
    body = doc
    if set(doc) == {"network"}:
        body = checker.mapping(doc, "network", "network")
    if "version" not in body:
        raise InvalidInput(f"{what} has no version", cause="cloud-init needs version: 1 or version: 2",
                           hint="add version: 2 (netplan style: ethernets, addresses, routes)")
    version = body["version"]
    if version == 2 and not isinstance(version, bool):
        checker.v2(body)
    elif version == 1 and not isinstance(version, bool):
        checker.v1(body)
    else:
        checker.fail(body, "version", "version", f"{version!r} is not 1 or 2")
    return NetworkConfig(text=yaml_lines.dump(doc), version=version, static_ipv4=tuple(checker.static_ipv4))
