"""``<domain>``: a whole VM definition, built from and read back into a VMSpec."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kvmhub.errors import InvalidInput
from kvmhub.models import BootSpec, VMSpec
from kvmhub.xml._util import (
    Element,
    child_text,
    choices,
    expect_root,
    make,
    parse,
    serialize,
    sub,
)
from kvmhub.xml.chardev import build_agent_channel, build_serial, has_agent_channel, parse_serial
from kvmhub.xml.disk import build_disk, parse_disk
from kvmhub.xml.firmware import build_firmware, parse_firmware
from kvmhub.xml.graphics import build_graphics, parse_graphics
from kvmhub.xml.interface import build_interface, parse_interface
from kvmhub.xml.metadata import ROOT_TAG, build_metadata, parse_metadata
from kvmhub.xml.tpm import build_tpm, parse_tpm
from kvmhub.xml.tuning import build_dimms, build_numa, build_sizes, parse_sizes

_BOOT_DEVICES = choices(BootSpec, "order")
_X86 = frozenset({"i686", "x86_64"})


def _build_os(parent: Element, spec: VMSpec) -> None:
    os_el = sub(parent, "os")
    sub(os_el, "type", {"arch": spec.arch, "machine": spec.machine}, text="hvm")
    boot = spec.boot
    if boot.kernel is not None:
        sub(os_el, "kernel", text=boot.kernel)
    if boot.initrd is not None:
        sub(os_el, "initrd", text=boot.initrd)
    if boot.cmdline is not None:
        sub(os_el, "cmdline", text=boot.cmdline)
    # libvirt refuses <os><boot> next to per-device boot order; the devices' order wins
    if not any(d.boot_order is not None for d in spec.disks):
        for dev in boot.order:
            sub(os_el, "boot", {"dev": dev})


def _build_devices(parent: Element, spec: VMSpec) -> None:
    devices = sub(parent, "devices")
    # Device order follows libvirt's own dumpxml so a define/dumpxml diff stays small.
    for disk in spec.disks:
        devices.append(build_disk(disk))
    if any(disk.bus == "scsi" for disk in spec.disks):
        # Otherwise libvirt picks lsilogic, which many QEMU builds leave out; virtio-scsi is always there.
        sub(devices, "controller", {"type": "scsi", "index": "0", "model": "virtio-scsi"})
    for nic in spec.nics:
        devices.append(build_interface(nic))
    if spec.serial is not None:
        devices.extend(build_serial(spec.serial))
    if spec.guest_agent:
        devices.append(build_agent_channel())
    if spec.tpm is not None:
        devices.append(build_tpm(spec.tpm))
    if spec.graphics is not None:
        devices.append(build_graphics(spec.graphics))
    sub(devices, "memballoon", {"model": "virtio"})
    rng = sub(devices, "rng", {"model": "virtio"})
    sub(rng, "backend", {"model": "random"}, text="/dev/urandom")
    build_dimms(devices, spec)


def build_domain(spec: VMSpec) -> Element:
    """The ``<domain>`` element for ``spec``. Raises InvalidInput for values XML or libvirt cannot take."""
    root = make("domain", {"type": spec.domain_type})
    sub(root, "name", text=spec.name)
    if spec.uuid is not None:
        sub(root, "uuid", text=spec.uuid)
    if spec.description is not None:
        sub(root, "description", text=spec.description)
    metadata = sub(root, "metadata")
    metadata.append(build_metadata(spec.meta))
    build_sizes(root, spec)
    _build_os(root, spec)
    features = sub(root, "features")
    sub(features, "acpi")
    if spec.arch in _X86:
        sub(features, "apic")
    os_el = root.find("os")
    assert os_el is not None
    build_firmware(os_el, features, spec)
    # host-passthrough needs KVM; under TCG QEMU's default CPU model is the portable choice.
    if spec.domain_type == "kvm" or spec.max_memory_mib is not None:
        cpu = sub(root, "cpu", {"mode": "host-passthrough"} if spec.domain_type == "kvm" else None)
        if spec.max_memory_mib is not None:
            build_numa(cpu, spec)
    sub(root, "clock", {"offset": "utc"})
    sub(root, "on_poweroff", text="destroy")
    sub(root, "on_reboot", text="restart")
    sub(root, "on_crash", text="destroy")
    _build_devices(root, spec)
    return root


def domain_to_xml(spec: VMSpec) -> str:
    """The libvirt domain XML for ``spec``, ready for ``defineXML``.

    Always carries the kvmhub metadata element (even an empty one) so the VM reads as managed by kvmhub.
    Raises InvalidInput if a value holds characters XML cannot carry, a disk source names both a volume
    and a path, or a NIC names both a network and a bridge.
    """
    return serialize(build_domain(spec))


def _parse_boot(os_el: Element | None) -> BootSpec:
    if os_el is None:
        return BootSpec(order=[])
    order = [dev for el in os_el.iterfind("boot") if (dev := el.get("dev")) in _BOOT_DEVICES]
    fields: dict[str, Any] = {
        "order": order,
        "kernel": child_text(os_el, "kernel"),
        "initrd": child_text(os_el, "initrd"),
        "cmdline": child_text(os_el, "cmdline"),
    }
    return BootSpec.model_validate(fields)


def parse_domain(root: Element) -> VMSpec:
    """Read a ``<domain>`` element; see :func:`domain_from_xml`."""
    expect_root(root, "domain", "domain")
    os_el = root.find("os")
    os_type = os_el.find("type") if os_el is not None else None
    devices = root.find("devices")
    if devices is None:
        devices = make("devices")
    meta = root.find(f"metadata/{ROOT_TAG}")
    fields: dict[str, Any] = {
        "name": child_text(root, "name") or "",
        "uuid": child_text(root, "uuid"),
        "domain_type": "kvm" if root.get("type") == "kvm" else "qemu",
        "machine": os_type.get("machine") if os_type is not None else None,
        "description": child_text(root, "description"),
        "disks": [d for el in devices.iterfind("disk") if (d := parse_disk(el)) is not None],
        "nics": [n for el in devices.iterfind("interface") if (n := parse_interface(el)) is not None],
        "serial": parse_serial(devices),
        "graphics": parse_graphics(devices),
        "boot": _parse_boot(os_el),
        "guest_agent": has_agent_channel(devices),
        "tpm": parse_tpm(devices),
    }
    fields["firmware"], fields["secure_boot"] = parse_firmware(root)
    if os_type is not None and os_type.get("arch") is not None:
        fields["arch"] = os_type.get("arch")
    parse_sizes(root, fields)
    if meta is not None:
        fields["meta"] = parse_metadata(meta)
    try:
        return VMSpec.model_validate(fields)
    except ValidationError as exc:
        raise InvalidInput(
            f"cannot read domain {fields['name']!r}",
            cause="its XML holds values outside what kvmhub models",
            original=str(exc),
        ) from exc


def domain_from_xml(xml: str) -> VMSpec:
    """Read domain XML, kvmhub's own or libvirt's ``dumpxml`` of any domain, into a VMSpec.

    What VMSpec does not model (addresses, aliases, controllers, seclabels, video...) is ignored, as are
    devices it cannot describe faithfully (see :func:`kvmhub.xml.disk.parse_disk` and
    :func:`kvmhub.xml.interface.parse_interface`). Domain types other than ``kvm`` read as ``qemu``.
    ``domain_from_xml(domain_to_xml(spec)) == spec`` for every spec ``domain_to_xml`` accepts.
    Raises InvalidInput if the XML is malformed, not a domain, or holds unreadable numbers.
    """
    return parse_domain(parse(xml, "domain"))


def domain_is_managed(xml: str) -> bool:
    """Whether domain XML carries kvmhub metadata, i.e. kvmhub made (or adopted) the VM."""
    return parse(xml, "domain").find(f"metadata/{ROOT_TAG}") is not None
