"""Virtual networks: create (nat, isolated, routed, open, bridge, direct), list, start/stop, remove."""

from __future__ import annotations

import ipaddress
import uuid as uuidlib
from typing import Any, Literal

from pydantic import BaseModel

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor, host_root
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.models import DEFAULT_PROJECT, ProjectUse
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import projects
from kvmhub.validate import check_name
from kvmhub.xml import network as xml_network
from kvmhub.xml._util import child_text, parse, with_uuid
from kvmhub.xml.domain import domain_from_xml

Mode = Literal["nat", "isolated", "routed", "open", "bridge", "direct"]
MODES = ("nat", "isolated", "routed", "open", "bridge", "direct")
DEFAULT_SUBNET = ipaddress.IPv4Network("192.168.122.0/24")


class NetworkInfo(BaseModel):
    name: str
    active: bool
    autostart: bool
    mode: str
    bridge: str | None
    subnet: str | None
    subnet6: str | None = None
    dhcp_range: str | None = None
    domain: str | None = None
    dev: str | None = None
    vms: list[str] = []
    project: str = DEFAULT_PROJECT


def _info(net: hv_networks.Network, users: dict[str, list[str]], project: str) -> NetworkInfo:
    facts = xml_network.network_from_xml(net.xml())
    return NetworkInfo(
        name=net.name,
        active=net.is_active(),
        autostart=net.autostart(),
        mode=facts.mode,
        bridge=facts.bridge,
        subnet=str(facts.subnet) if facts.subnet else None,
        subnet6=str(facts.subnet6) if facts.subnet6 else None,
        dhcp_range="-".join(facts.dhcp_range) if facts.dhcp_range else None,
        domain=facts.domain,
        dev=facts.dev,
        vms=users.get(net.name, []),
        project=project,
    )


def _users(hv: Hypervisor) -> dict[str, list[str]]:
    """Network name -> names of VMs with a NIC on it."""

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


def list_networks(hv: Hypervisor, only: frozenset[str] | None = None) -> list[NetworkInfo]:
    """Every network by name (only those of the projects in ``only`` when given)."""
    users, owners = _users(hv), projects.network_owners(hv)
    return [_info(n, users, owners.get(n.name, DEFAULT_PROJECT))
            for n in sorted(hv_networks.list_networks(hv), key=lambda n: n.name)
            if only is None or owners.get(n.name, DEFAULT_PROJECT) in only]


def show(hv: Hypervisor, name: str) -> NetworkInfo:
    return _info(hv_networks.lookup_network(hv, name), _users(hv), projects.network_project(hv, name))


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
    raise Conflict("no free /24 left in 192.168.100-254.0", hint="pass {opt:subnet} CIDR")


def _host_devices() -> set[str] | None:
    """Network devices of the host libvirtd runs on, when its files are reachable from here."""
    root = host_root()
    # /proc/PID/net/dev lists the devices of that process's network namespace
    path = root.removesuffix("/root") + "/net/dev" if root else "/proc/self/net/dev"
    try:
        with open(path) as fh:
            return {line.split(":", 1)[0].strip() for line in fh.readlines()[2:]}
    except OSError:
        return None


def _parse_subnet(subnet: str, taken: dict[str, ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
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
    return net4


def _parse_range(text: str) -> tuple[str, str]:
    start, sep, end = text.partition("-")
    if not sep:
        raise InvalidInput(f"invalid DHCP range {text!r}", hint="for example 10.20.0.100-10.20.0.200")
    return start.strip(), end.strip()


def create(
    hv: Hypervisor,
    name: str,
    *,
    mode: Mode = "isolated",
    subnet: str | None = None,
    subnet6: str | None = None,
    dhcp_range: str | None = None,
    domain: str | None = None,
    bridge: str | None = None,
    dev: str | None = None,
    autostart: bool = True,
    project: str | None = None,
    report: Reporter = QUIET,
) -> NetworkInfo:
    """Define and start a libvirt network owned by ``project`` (``default`` when None).

    nat/isolated/routed/open: a bridge of its own with DHCP over `subnet` (a free /24 when not given) and
    optionally IPv6. bridge: guests join the existing host bridge `bridge`; direct: macvtap on host NIC `dev`.
    Refused (QuotaExceeded) when the project holds its ``max_networks`` already.
    """
    check_name(name, "network")
    owner = projects.resolve(project)
    if mode not in MODES:
        raise InvalidInput(f"unknown network mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    if hv_networks.network_exists(hv, name):
        raise Conflict(f"a network named {name!r} already exists", hint="{cmd:net ls}", code="name.taken")
    if domain is not None:
        check_name(domain, "DNS domain")
    net4: ipaddress.IPv4Network | None = None
    net6: ipaddress.IPv6Network | None = None
    dhcp: tuple[str, str] | None = None
    if mode in ("bridge", "direct"):
        device = bridge if mode == "bridge" else dev
        if not device:
            raise InvalidInput(f"mode {mode} needs {'{opt:bridge} BR' if mode == 'bridge' else '{opt:dev} NIC'}")
        check_name(device, "device")
        known = _host_devices()
        if known is not None and device not in known:
            raise InvalidInput(
                f"there is no network device {device!r} on the host",
                cause=f"the host has: {', '.join(sorted(known))}",
                hint="make the bridge first: {cmd:net bridge create br0 --from eth0}" if mode == "bridge" else None,
            )
    else:
        taken = _taken_subnets(hv)
        net4 = _pick_subnet(taken) if subnet is None else _parse_subnet(subnet, taken)
        if subnet6 is not None:
            try:
                net6 = ipaddress.IPv6Network(subnet6, strict=False)
            except ValueError as exc:
                raise InvalidInput(f"invalid IPv6 subnet {subnet6!r}: {exc}", hint="e.g. fd10:20::/64") from None
        hosts = list(net4.hosts())
        dhcp = _parse_range(dhcp_range) if dhcp_range else (str(hosts[1]), str(hosts[-1]))
    xml = xml_network.network_to_xml(
        name, mode, net4, dhcp, bridge if mode == "bridge" else None, domain, subnet6=net6, dev=dev
    )
    net_uuid = str(uuidlib.uuid4())
    xml = with_uuid(xml, "network", net_uuid)
    locks = [LockSpec("network", name), projects.lock(owner)]
    with Operation(hv, "network.create", name, locks=locks, report=report) as op:
        if hv_networks.network_exists(hv, name):  # again under the lock: a create of the same name may have won
            raise Conflict(f"a network named {name!r} already exists", hint="{cmd:net ls}", code="name.taken")
        projects.check(hv, owner, ProjectUse(networks=1))
        op.add(f"undefine network {name}", Action("network.undefine", {"name": name, "uuid": net_uuid}))
        projects.record_network(hv.uri, name, net_uuid, owner)  # ignored until a network of that UUID lives
        net = hv_networks.define_network(hv, xml)
        faults.point("net-define")
        op.add(f"stop network {name}", Action("network.stop", {"name": name, "uuid": net_uuid}))
        net.start()
        if autostart:
            net.set_autostart(True)
        faults.point("net-start")
        op.success()
    return _info(net, {}, owner)


def _ours(ctx: Context, p: dict[str, Any]) -> hv_networks.Network | None:
    """The network a step recorded, if it is still there under its name and UUID."""
    try:
        net = hv_networks.lookup_network(ctx.hv, p["name"])
    except NotFound:
        return None
    return net if child_text(parse(net.xml(), "network"), "uuid") == p["uuid"] else None


@register("network.stop")
def _stop_action(ctx: Context, p: dict[str, Any]) -> None:
    net = _ours(ctx, p)
    if net is not None and net.is_active():
        net.stop()


@register("network.undefine")
def _undefine_action(ctx: Context, p: dict[str, Any]) -> None:
    projects.forget_network(ctx.hv.uri, p["name"], p["uuid"])  # its own record only
    net = _ours(ctx, p)
    if net is None:
        return
    if net.is_active():
        net.stop()
    net.undefine()


def start(hv: Hypervisor, name: str) -> None:
    net = hv_networks.lookup_network(hv, name)
    if net.is_active():
        raise Conflict(f"network {name!r} is already active")
    net.start()


def stop(hv: Hypervisor, name: str) -> None:
    net = hv_networks.lookup_network(hv, name)
    if not net.is_active():
        raise Conflict(f"network {name!r} is not active")
    net.stop()


def set_autostart(hv: Hypervisor, name: str, on: bool) -> None:
    hv_networks.lookup_network(hv, name).set_autostart(on)


def remove(hv: Hypervisor, name: str, *, force: bool = False) -> None:
    """Stop and undefine a network; refused while VMs have NICs on it, unless ``force``."""
    with Operation(hv, "network.rm", name, locks=[LockSpec("network", name)]) as op:
        net = hv_networks.lookup_network(hv, name)
        users = _users(hv).get(name, [])
        if users and not force:
            raise Conflict(
                f"network {name!r} is used by VM(s): {', '.join(users)}",
                hint="remove those VMs' NICs first, or pass {opt:force}",
            )
        if net.is_active():
            op.add(f"stop network {name}")  # removing is not undone; the steps show in `ops show`
            net.stop()
        op.add(f"undefine network {name}")
        net.undefine()
        projects.forget_network(hv.uri, name, net.uuid)
        op.success()


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
