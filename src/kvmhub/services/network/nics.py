"""NICs on VMs: add and remove (hot-plugged when the VM runs), always persisted."""

from __future__ import annotations

from kvmhub import faults
from kvmhub.errors import InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import networks as hv_networks
from kvmhub.models import NICSpec
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.services import undo_actions
from kvmhub.services.network import leases
from kvmhub.services.vm import lifecycle as vms
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.interface import interface_to_xml
from kvmhub.xml.network import network_subnet_from_xml


def list_nics(hv: Hypervisor, vm: str) -> list[NICSpec]:
    return domain_from_xml(vms.get(hv, vm).xml(inactive=True)).nics


def find(hv: Hypervisor, vm: str, which: str) -> NICSpec:
    """A NIC by MAC address or by index (0 = first)."""
    return pick(list_nics(hv, vm), vm, which)


def pick(nics: list[NICSpec], vm: str, which: str) -> NICSpec:
    """The NIC of ``nics`` (VM ``vm``'s) named by MAC address or index (0 = first)."""
    if which.isdigit() and int(which) < len(nics):
        return nics[int(which)]
    for nic in nics:
        if nic.mac and nic.mac.lower() == which.lower():
            return nic
    raise NotFound(f"VM {vm} has no NIC {which!r}", hint=f"{{cmd:nic ls {vm}}} lists them", code="nic.not_found")


def add(hv: Hypervisor, vm: str, network: str, *, model: str = "virtio", ip: str | None = None) -> tuple[NICSpec, bool]:
    """Plug a NIC on `network` into the VM (live if it runs); returns (nic, applied live)."""
    dom = vms.get(hv, vm)
    net = hv_networks.lookup_network(hv, network)
    managed = network_subnet_from_xml(net.xml()) is not None
    if ip is not None and not managed:
        raise InvalidInput(f"{{opt:ip}} needs a network kvmhub hands addresses out on; {network!r} is not one")
    if model not in ("virtio", "e1000", "rtl8139"):
        raise InvalidInput(f"unknown NIC model {model!r}", hint="virtio, e1000 or rtl8139")
    with Operation(hv, "nic.add", vm, locks=[LockSpec("vm", vm), LockSpec("network", network)]) as op:
        nic = NICSpec(network=network, mac=leases.new_mac(hv, network), model=model)  # type: ignore[arg-type]
        assert nic.mac is not None
        if managed:
            op.add(f"release the address of {nic.mac} on {network}",
                   undo_actions.release_lease(network, nic.mac))
            if ip is not None:
                leases.register(hv, network, vm, nic.mac, ip)
            else:
                leases.register_free(hv, network, vm, nic.mac)
        op.add(f"unplug NIC {nic.mac}", undo_actions.remove_device(dom.uuid, vm, interface_to_xml(nic),
                                                                   dom.xml(inactive=True)))
        live = dom.attach_device(interface_to_xml(nic))
        faults.point("nic-attach")
        op.success()
    return nic, live


def remove(hv: Hypervisor, vm: str, which: str) -> tuple[NICSpec, bool]:
    """Unplug a NIC (live if the VM runs) and release its reservation."""
    dom = vms.get(hv, vm)
    nic = find(hv, vm, which)
    locks = [LockSpec("vm", vm)] + ([LockSpec("network", nic.network)] if nic.network else [])
    with Operation(hv, "nic.rm", vm, locks=locks) as op:
        op.add(f"unplug NIC {nic.mac}")  # a removal is not undone; the steps show in `ops show`
        live = dom.detach_device(interface_to_xml(nic))
        if nic.network and nic.mac:
            op.add(f"release the address of {nic.mac} on {nic.network}")
            try:
                leases.unregister(hv, nic.network, nic.mac)
            except KvmhubError:
                pass  # the NIC is gone; a missing network has nothing to release
        op.success()
    return nic, live


def set_link(hv: Hypervisor, vm: str, which: str, up: bool) -> tuple[NICSpec, bool]:
    """Plug or unplug the virtual cable of a NIC (live when the VM runs)."""
    dom = vms.get(hv, vm)
    nic = find(hv, vm, which)
    nic.link = "up" if up else "down"
    with Operation(hv, "nic.set", vm, locks=[LockSpec("vm", vm)]) as op:
        op.add(f"link of NIC {nic.mac} {nic.link}")  # one live change, nothing to undo
        live = dom.update_device(interface_to_xml(nic))
        op.success()
    return nic, live
