"""Give a host device to a VM (``<hostdev>``, managed: libvirt binds it to VFIO and back) and take it back.

A PCI or mediated device needs the host's IOMMU, a viable IOMMU group, and a device the host does not use;
a device is given to one VM at a time. Applied live when the VM runs, always persisted.
"""

from __future__ import annotations

from kvmhub.errors import Conflict, HostProblem, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.models.device import DeviceChange, HostDevice
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import undo_actions
from kvmhub.services.host import devices
from kvmhub.services.vm import lifecycle as vms
from kvmhub.xml.hostdev import GivenDevice, NodeDevice, hostdev_to_xml

IOMMU_HINT = ("switch the IOMMU on in the firmware (VT-d / AMD-Vi) and on the kernel command line "
              "(intel_iommu=on or amd_iommu=on, then reboot the host); {cmd:host devices} shows each device's "
              "IOMMU group")


def _label(dev: NodeDevice) -> str:
    if dev.kind == "pci":
        return f"PCI device {dev.pci_address}"
    if dev.kind == "mdev":
        return f"mediated device {dev.mdev_uuid}"
    return f"USB device {dev.vendor_id}:{dev.product_id}"


def check_passable(hv: Hypervisor, vm: str, dev: NodeDevice, all_nodes: list[NodeDevice],
                   given_to: list[tuple[str, GivenDevice]]) -> None:
    """Refuse (with the reason and the fix) giving ``dev`` to ``vm``: it is given to a VM already, the host
    uses it, the IOMMU is off, or its IOMMU group is not viable."""
    label = _label(dev)
    if (owner := devices.user_of(dev, given_to)) is not None:
        if owner == vm:
            raise Conflict(f"VM {vm} has {label} already", code="device.in_use")
        raise Conflict(f"{label} is given to VM {owner}", code="device.in_use",
                       cause="a host device is given to one VM at a time",
                       hint=f"take it back first: {{cmd:device detach {owner} {dev_id(dev)}}}")
    if dev.kind == "usb_device":
        return  # USB passthrough goes through the host's USB stack: no IOMMU needed
    if dev.kind == "pci" and (use := devices.used_by_host(dev, devices.host_uses(hv, all_nodes))) is not None:
        raise Conflict(f"the host uses {label}: {use}", code="device.host_in_use",
                       cause="giving it to a VM would take it from the host (its network or its root disk)",
                       hint="give a VM a device the host does not use; {cmd:host devices} shows what the host uses")
    if not devices.iommu_on(hv, dev if dev.kind == "pci" else _parent(dev, all_nodes)):
        raise HostProblem(f"cannot give {label} to a VM: the host's IOMMU is off", code="host.iommu_off",
                          cause="no IOMMU groups on the host (/sys/kernel/iommu_groups is empty, or libvirt "
                                "shows the device in no IOMMU group), so VFIO cannot isolate the device",
                          hint=IOMMU_HINT)
    if dev.kind == "pci" and (blockers := devices.group_blockers(dev, all_nodes)):
        raise Conflict(f"cannot give {label} to a VM: IOMMU group {dev.iommu_group} is not viable",
                       code="device.group_not_viable",
                       cause="other devices of its IOMMU group are bound to host drivers: " + ", ".join(blockers),
                       hint="give the VM every device of the group, or unbind them from their host drivers")


def _parent(dev: NodeDevice, all_nodes: list[NodeDevice]) -> NodeDevice:
    # a mediated device is isolated through its parent's IOMMU group
    found = next((n for n in all_nodes if n.name == dev.parent), None)
    return NodeDevice(name=dev.name, kind=dev.kind, iommu_group=dev.iommu_group) if found is None else found


def dev_id(dev: NodeDevice) -> str:
    if dev.kind == "pci":
        return dev.pci_address or dev.name
    if dev.kind == "mdev":
        return dev.mdev_uuid or dev.name
    return f"{dev.vendor_id}:{dev.product_id}"


def attach(hv: Hypervisor, vm: str, device: str, *, report: Reporter = QUIET) -> DeviceChange:
    """Give the host device ``device`` (a PCI address, ``VENDOR:PRODUCT`` or mediated device UUID) to ``vm``:
    live when it runs, always persisted. Raises ``device.not_found``, ``device.in_use``, ``device.host_in_use``,
    ``host.iommu_off`` or ``device.group_not_viable`` with nothing changed."""
    device = devices.check_device_id(device)
    dom = vms.get(hv, vm)
    all_nodes = devices.nodes(hv)
    dev = devices.resolve(all_nodes, device)
    check_passable(hv, vm, dev, all_nodes, devices.given(hv))
    xml = hostdev_to_xml(dev)
    report.phase(f"giving {_label(dev)} to {vm}")
    with Operation(hv, "device.attach", vm, locks=[LockSpec("vm", vm), LockSpec("hostdev", dev.name)]) as op:
        op.add(f"take back {_label(dev)}", undo_actions.remove_device(dom.uuid, vm, xml, dom.xml(inactive=True)))
        live = dom.attach_device(xml)
        op.success()
    return DeviceChange(device=devices.describe(dev, all_nodes, vm, None), live=live)


def given_to_vm(hv: Hypervisor, vm: str, device: str) -> tuple[GivenDevice, HostDevice]:
    """The ``<hostdev>`` of ``vm`` naming ``device``, and the device as listed; ``device.not_found`` else."""
    device = devices.check_device_id(device)
    dom = vms.get(hv, vm)
    all_nodes = devices.nodes(hv)
    mine = [g for name, g in devices.given(hv) if name == dom.name]
    try:
        dev: NodeDevice | None = devices.resolve(all_nodes, device)
    except NotFound:
        dev = None  # the device may be gone from the host, yet still in the definition
    for g in mine:
        if (dev is not None and g.matches(dev)) or _names(g, device):
            shown = devices.describe(dev, all_nodes, vm, None) if dev is not None else HostDevice(
                kind=g.kind, id=device, node="")  # type: ignore[arg-type]
            return g, shown
    raise NotFound(f"VM {vm} has no host device {device}", code="device.not_found",
                   hint=f"{{cmd:show {vm}}} lists its devices; {{cmd:host devices}} shows which VM has each")


def _names(g: GivenDevice, device: str) -> bool:
    if g.kind == "pci":
        return g.pci_address in (device, f"0000:{device}")
    if g.kind == "mdev":
        return g.mdev_uuid == device
    return f"{g.vendor_id}:{g.product_id}" == device


def detach(hv: Hypervisor, vm: str, device: str, *, report: Reporter = QUIET) -> DeviceChange:
    """Take the host device ``device`` back from ``vm`` (live when it runs, always persisted); libvirt gives a
    managed PCI device back to its host driver."""
    g, shown = given_to_vm(hv, vm, device)
    dom = vms.get(hv, vm)
    report.phase(f"taking {shown.kind.upper()} device {shown.id} back from {vm}")
    with Operation(hv, "device.detach", vm, locks=[LockSpec("vm", vm)]) as op:
        op.add(f"take back {shown.id}")  # a removal is not undone; the step shows in `ops show`
        live = dom.detach_device(g.xml)
        op.success()
    return DeviceChange(device=shown.model_copy(update={"vm": None}), live=live)
