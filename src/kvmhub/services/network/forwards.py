"""Port forwards from the host to a VM: kept in the VM's kvmhub metadata (they travel with it),
applied as kvmhub-owned firewall rules to the VM's reserved address, re-applied when it starts,
removed with it."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kvmhub import faults
from kvmhub.errors import Conflict, HostProblem, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor, is_local_uri
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.models import KvmhubMeta, PortForward
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.tools import firewall
from kvmhub.xml import network as xml_network
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.metadata import metadata_to_xml

_SPEC = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
# host ports are one namespace across VMs: forward changes take this lock besides the VM's
_HOST_PORTS = LockSpec("forwards", "host-ports")


def parse(spec: str, host_ip: str | None = None) -> PortForward:
    """'8080:80', '5353:53/udp' -> PortForward (ports 1-65535)."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise InvalidInput(f"invalid forward {spec!r}", hint="HOSTPORT:GUESTPORT[/tcp|udp], e.g. 8080:80")
    host_port, guest_port = int(m.group(1)), int(m.group(2))
    for port in (host_port, guest_port):
        if not 1 <= port <= 65535:
            raise InvalidInput(f"port {port} is out of range", hint="1 to 65535")
    if host_ip is not None:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidInput(f"{{opt:host_ip}} {host_ip!r} is not an IPv4 address") from None
    if m.group(3) == "udp":
        return PortForward(host_port=host_port, guest_port=guest_port, proto="udp", host_ip=host_ip)
    return PortForward(host_port=host_port, guest_port=guest_port, proto="tcp", host_ip=host_ip)


def _require_local(hv: Hypervisor) -> None:
    if not is_local_uri(hv.uri):
        raise HostProblem(
            "port forwards are firewall rules on the VM's host",
            cause=f"{hv.uri} is a remote host, and kvmhub installs no agent there",
            hint="run kvmhub on that host (or through {cmd:serve} there)",
        )


def _meta(dom: hv_domains.Domain) -> KvmhubMeta:
    return domain_from_xml(dom.xml(inactive=True)).meta


def guest_ip(hv: Hypervisor, dom: hv_domains.Domain) -> str:
    """The VM's reserved address: forwards point at it, so they survive restarts."""
    for nic in domain_from_xml(dom.xml(inactive=True)).nics:
        if not (nic.network and nic.mac):
            continue
        facts = xml_network.network_from_xml(hv_networks.lookup_network(hv, nic.network).xml())
        for host in facts.dhcp_hosts:
            if host.mac.lower() == nic.mac.lower():
                return host.ip
    raise InvalidInput(
        f"VM {dom.name} has no reserved address to forward to",
        cause="forwards need a NIC on a kvmhub network with a reservation (bridged NICs get outside addresses)",
        hint=f"{{cmd:net lease add NET --vm {dom.name} --ip A}}",
    )


def _all_forwards(hv: Hypervisor) -> dict[str, list[PortForward]]:
    out = {}
    for dom in hv_domains.list_all(hv):
        try:
            meta = _meta(dom)
        except KvmhubError:
            continue
        if meta.forwards:
            out[dom.name] = meta.forwards
    return out


def _clashes(a: PortForward, b: PortForward) -> bool:
    same_ip = a.host_ip is None or b.host_ip is None or a.host_ip == b.host_ip
    return a.host_port == b.host_port and a.proto == b.proto and same_ip


def add(hv: Hypervisor, vm: str, spec: str, host_ip: str | None = None) -> PortForward:
    """Forward a host port to the VM, applied now and kept in its metadata."""
    _require_local(hv)
    fwd = parse(spec, host_ip)
    with Operation(hv, "forward.add", vm, locks=[LockSpec("vm", vm), _HOST_PORTS]) as op:
        dom = hv_domains.lookup(hv, vm)
        ip = guest_ip(hv, dom)
        for other, forwards in _all_forwards(hv).items():
            for f in forwards:
                if _clashes(f, fwd):
                    raise Conflict(
                        f"host port {fwd.host_port}/{fwd.proto} is already forwarded to {other}:{f.guest_port}",
                        hint=f"pick another host port, or {{cmd:net forward rm {other} {f.host_port}/{f.proto}}}",
                    )
        meta = _meta(dom)
        meta.forwards.append(fwd)
        op.add(f"take back forward {fwd.host_port}/{fwd.proto} of {vm}", Action(
            "forward.withdraw", {"vm": vm, "uuid": dom.uuid, "ip": ip, "forward": fwd.model_dump(mode="json")}))
        firewall.apply(vm, ip, meta.forwards)
        faults.point("forward-rules")
        dom.set_metadata(metadata_to_xml(meta))
        op.success()
    return fwd


@register("forward.withdraw")
def _withdraw(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of `forward add`: that forward leaves the VM's metadata, and its rules the firewall."""
    fwd = PortForward.model_validate(p["forward"])
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    rest: list[PortForward] = []
    if dom is not None:
        meta = _meta(dom)
        rest = [f for f in meta.forwards if f != fwd]
        if len(rest) != len(meta.forwards):
            meta.forwards = rest
            dom.set_metadata(metadata_to_xml(meta))
    if rest:
        firewall.apply(p["vm"], p["ip"], rest)
    else:
        firewall.clear(p["vm"])


def remove(hv: Hypervisor, vm: str, which: str) -> PortForward:
    """Remove the forward of host port `which` ('8080' or '8080/udp')."""
    _require_local(hv)
    port, _, proto = which.partition("/")
    with Operation(hv, "forward.rm", vm, locks=[LockSpec("vm", vm), _HOST_PORTS]) as op:
        dom = hv_domains.lookup(hv, vm)
        meta = _meta(dom)
        match = [f for f in meta.forwards if str(f.host_port) == port and f.proto == (proto or "tcp")]
        if not match:
            raise NotFound(f"VM {vm} has no forward of host port {which}", hint=f"{{cmd:net forward ls {vm}}}")
        meta.forwards.remove(match[0])
        op.add(f"drop forward {which} of {vm}")  # a removal is not undone; the steps show in `ops show`
        dom.set_metadata(metadata_to_xml(meta))
        if meta.forwards:
            sync(hv, vm)
        else:
            firewall.clear(vm)
        op.success()
    return match[0]


def list_forwards(hv: Hypervisor, vm: str | None = None) -> dict[str, list[PortForward]]:
    if vm is None:
        return _all_forwards(hv)
    return {vm: _meta(hv_domains.lookup(hv, vm)).forwards}


def sync(hv: Hypervisor, vm: str) -> int:
    """Make the firewall match the VM's forwards (after start, or an address change); returns how many."""
    if not is_local_uri(hv.uri):
        return 0
    dom = hv_domains.lookup(hv, vm)
    forwards = _meta(dom).forwards
    if not forwards:
        return 0  # nothing to re-apply; `forward rm` and `rm` clear the rules themselves
    firewall.apply(vm, guest_ip(hv, dom), forwards)
    return len(forwards)


def drop(hv: Hypervisor, vm: str) -> int:
    """Remove the VM's rules (when it is removed)."""
    if not is_local_uri(hv.uri):
        return 0
    return firewall.clear(vm)
