"""The host's devices a VM could be given (PCI, USB, mediated), which VM has each, and what the host uses.

Listing comes from libvirt's node devices. What the host itself uses is read on this machine (``ip -j addr``,
``/proc/self/mounts``, sysfs), so it is known only when the VM's host is the machine kvmhub runs on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from kvmhub.errors import InvalidInput, NotFound
from kvmhub.hv import Hypervisor, host_files_here, nodedevs
from kvmhub.hv import domains as hv_domains
from kvmhub.models.device import DEVICE_PATTERN, HostDevice
from kvmhub.xml.hostdev import BRIDGE_CLASS, GivenDevice, NodeDevice, given_devices, node_device_from_xml

SYSFS = Path("/sys")
IOMMU_GROUPS = SYSFS / "kernel" / "iommu_groups"
# drivers a device of a group may have while another device of the group is given to a VM
_FREE_DRIVERS = frozenset({"vfio-pci", "pci-stub", "pciback", "xen-pciback"})
_PCI = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
_IDS = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")
_KINDS = {"pci": "pci", "usb_device": "usb", "mdev": "mdev"}


def nodes(hv: Hypervisor) -> list[NodeDevice]:
    """Every node device of the VM's host, parsed."""
    return [node_device_from_xml(x) for x in nodedevs.node_device_xmls(hv)]


def given(hv: Hypervisor) -> list[tuple[str, GivenDevice]]:
    """(VM name, host device) for every ``<hostdev>`` in the definitions and running states of the host's VMs."""
    out: list[tuple[str, GivenDevice]] = []
    for dom in hv_domains.list_all(hv):
        seen = set()
        xmls = [dom.xml(inactive=True)] + ([dom.xml()] if dom.is_active() else [])
        for xml in xmls:
            for dev in given_devices(xml):
                if dev.xml not in seen:
                    seen.add(dev.xml)
                    out.append((dom.name, dev))
    return out


def iommu_on(hv: Hypervisor, dev: NodeDevice) -> bool:
    """Whether the host has an active IOMMU for ``dev``: its node device names an IOMMU group, and (on this
    machine) the kernel lists IOMMU groups."""
    if dev.iommu_group is None:
        return False
    return not (host_files_here(hv.uri) and not _has_entries(IOMMU_GROUPS))


def _has_entries(path: Path) -> bool:
    try:
        return any(path.iterdir())
    except OSError:
        return False


def group_blockers(dev: NodeDevice, all_nodes: list[NodeDevice]) -> list[str]:
    """The other devices of ``dev``'s IOMMU group bound to a host driver (``ADDR (driver)``): while any is, the
    group is not viable and no device of it can be given to a VM."""
    by_address = {n.pci_address: n for n in all_nodes if n.kind == "pci" and n.pci_address}
    out = []
    for addr in dev.group_addresses:
        other = by_address.get(addr)
        if addr == dev.pci_address or other is None or other.driver in (None, *_FREE_DRIVERS):
            continue
        if other.pci_class is not None and other.pci_class >> 16 == BRIDGE_CLASS:
            continue  # bridges and root ports stay with the host; VFIO allows them
        out.append(f"{addr} ({other.driver})")
    return out


def host_uses(hv: Hypervisor, all_nodes: list[NodeDevice]) -> dict[str, str]:
    """sysfs path -> what the host uses there (``NIC eth0 with 10.0.0.5``, ``disk holding /``); empty when the
    VM's host is not this machine."""
    if not host_files_here(hv.uri):
        return {}
    uses: dict[str, str] = {}
    paths = {n.interface: n.path for n in all_nodes if n.kind == "net" and n.interface and n.path}
    for iface, why in _addressed_interfaces().items():
        where = paths.get(iface) or _real(SYSFS / "class" / "net" / iface)
        if where:
            uses[where] = why
    for where in _root_disk_paths():
        uses[where] = "disk holding /"
    return uses


def _real(path: Path) -> str | None:
    try:
        return str(path.resolve(strict=True))
    except OSError:
        return None


def _addressed_interfaces() -> dict[str, str]:
    """Interfaces with an IP address (and the ports of bridges or bonds that have one) -> why they are in use."""
    try:
        proc = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=10, check=False)
        links = json.loads(proc.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    addressed: dict[str, str] = {}
    for link in links:
        addrs = [a.get("local") for a in link.get("addr_info", []) if a.get("scope") != "host" and a.get("local")]
        if addrs and link.get("ifname") != "lo":
            addressed[str(link["ifname"])] = f"NIC {link['ifname']} with {addrs[0]}"
    for link in links:
        master = link.get("master")
        if master in addressed and link.get("ifname") not in addressed:
            addressed[str(link["ifname"])] = f"NIC {link['ifname']}, port of {master} ({addressed[master]})"
    return addressed


def _root_disk_paths() -> list[str]:
    """sysfs paths of the block devices holding ``/`` (through device-mapper or RAID to the real disks)."""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    source = next((line.split()[0] for line in mounts.splitlines() if line.split()[1:2] == ["/"]), "")
    if not source.startswith("/dev/"):
        return []  # an overlay or tmpfs root: no disk of this host holds it
    name = os.path.basename(os.path.realpath(source))
    out: list[str] = []
    todo = [name]
    while todo and len(out) < 64:
        block = SYSFS / "class" / "block" / todo.pop()
        if (where := _real(block)) is not None:
            out.append(where)
            try:
                todo.extend(p.name for p in (block / "slaves").iterdir())
            except OSError:
                pass
    return out


def used_by_host(dev: NodeDevice, uses: dict[str, str]) -> str | None:
    """What the host uses ``dev`` for (a device under its sysfs directory is in use), or None."""
    base = dev.path or (_real(SYSFS / "bus" / "pci" / "devices" / dev.pci_address) if dev.pci_address else None)
    if not base:
        return None
    for where, why in sorted(uses.items()):
        if where == base or where.startswith(base.rstrip("/") + "/"):
            return why
    return None


def describe(dev: NodeDevice, all_nodes: list[NodeDevice], vm: str | None, host_use: str | None) -> HostDevice:
    """A node device as `host devices` shows it."""
    if dev.kind == "pci":
        ident = dev.pci_address or dev.name
    elif dev.kind == "mdev":
        ident = dev.mdev_uuid or dev.name
    else:
        ident = f"{dev.vendor_id}:{dev.product_id}"
    parent = next((n.pci_address for n in all_nodes if n.name == dev.parent), None) if dev.kind == "mdev" else None
    return HostDevice(
        kind=_KINDS[dev.kind], id=ident, node=dev.name, vendor_id=dev.vendor_id, vendor=dev.vendor,  # type: ignore[arg-type]
        product_id=dev.product_id, product=dev.product, device_class=dev.class_word, driver=dev.driver,
        usb_address=f"{dev.usb_bus:03d}.{dev.usb_device:03d}" if dev.usb_bus is not None
        and dev.usb_device is not None else None,
        parent=parent, mdev_type=dev.mdev_type, iommu_group=dev.iommu_group,
        group=[a for a in dev.group_addresses if a != dev.pci_address],
        group_viable=None if dev.iommu_group is None or dev.kind != "pci" else not group_blockers(dev, all_nodes),
        vm=vm, host_use=host_use)


def user_of(dev: NodeDevice, given_to: list[tuple[str, GivenDevice]]) -> str | None:
    """The VM ``dev`` is given to, or None."""
    return next((vm for vm, g in given_to if g.matches(dev)), None)


def list_devices(hv: Hypervisor) -> list[HostDevice]:
    """The host's PCI, USB and mediated devices: PCI by address, then USB, then mediated devices."""
    all_nodes = nodes(hv)
    given_to = given(hv)
    uses = host_uses(hv, all_nodes)
    wanted = [n for n in all_nodes if n.kind in _KINDS and (n.kind != "usb_device" or n.vendor_id)]
    wanted.sort(key=lambda n: (list(_KINDS).index(n.kind), n.pci_address or "", n.usb_bus or 0,
                               n.usb_device or 0, n.name))
    return [describe(n, all_nodes, user_of(n, given_to), used_by_host(n, uses) if n.kind == "pci" else None)
            for n in wanted]


def check_device_id(device: str) -> str:
    """``device`` in lower case when it is a PCI address, a ``VENDOR:PRODUCT`` id or a UUID; InvalidInput else."""
    if not re.match(DEVICE_PATTERN, device or ""):
        raise InvalidInput(
            f"{device!r} is not a host device", code="input.invalid",
            cause="a device is a PCI address (0000:01:00.0 or 01:00.0), a VENDOR:PRODUCT id (046d:c52b) or a "
                  "mediated device's UUID", hint="{cmd:host devices} lists the host's devices and their ids")
    return device.lower()


def resolve(all_nodes: list[NodeDevice], device: str) -> NodeDevice:
    """The node device named by a PCI address, a ``VENDOR:PRODUCT`` id (USB or PCI, when only one device has it)
    or a mediated device's UUID."""
    device = check_device_id(device)
    if (pci := _PCI.match(device)) is not None:
        address = f"{pci.group(1) or '0000'}:{pci.group(2)}:{pci.group(3)}.{pci.group(4)}"
        found = [n for n in all_nodes if n.kind == "pci" and n.pci_address == address]
    elif (ids := _IDS.match(device)) is not None:
        found = [n for n in all_nodes if n.kind in ("pci", "usb_device")
                 and (n.vendor_id, n.product_id) == (ids.group(1), ids.group(2))]
    else:
        found = [n for n in all_nodes if n.kind == "mdev" and n.mdev_uuid == device]
    if not found:
        raise NotFound(f"the host has no device {device}", code="device.not_found",
                       hint="{cmd:host devices} lists the host's devices and their ids")
    if len(found) > 1:
        raise InvalidInput(
            f"{len(found)} devices of the host are {device}: "
            + ", ".join(n.pci_address or f"USB {n.usb_bus:03d}.{n.usb_device:03d}" for n in found),
            cause="a VENDOR:PRODUCT id names one device only when the host has one such device",
            hint="name a PCI device by its address; {cmd:host devices} lists them")
    return found[0]
