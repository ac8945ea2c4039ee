"""``<disk>``: a VM's disks and CD-ROM drives."""

from __future__ import annotations

from typing import Any

from kvmhub.errors import InvalidInput
from kvmhub.models import DiskSource, DiskSpec
from kvmhub.xml._util import Element, child_text, choices, expect_root, make, parse, serialize, sub
from kvmhub.xml.tuning import build_iotune, parse_iotune

_DEVICES = choices(DiskSpec, "device")
_BUSES = choices(DiskSpec, "bus")
_FORMATS = choices(DiskSpec, "format")
_CACHES = choices(DiskSpec, "cache")

# The bus libvirt assumes for a target with no bus attribute, by device-name prefix.
_BUS_BY_PREFIX = (("vd", "virtio"), ("sd", "scsi"), ("hd", "ide"))


_PROTOCOLS = choices(DiskSource, "protocol")


def _source_type(source: DiskSource, target: str) -> str:
    has_volume = source.pool is not None or source.volume is not None
    if source.protocol is not None:
        if has_volume or source.path is not None:
            raise InvalidInput(
                f"disk {target}: the source names both a network export and a volume or path",
                hint="give either protocol + host + name, pool + volume, or path",
            )
        if source.host is None or (source.name is None and source.protocol != "nbd"):
            raise InvalidInput(
                f"disk {target}: a {source.protocol} source needs a host and a name",
                hint="e.g. nbd://HOST:10809/EXPORT, nfs://HOST/EXPORT/FILE, iscsi://HOST/IQN/LUN",
            )
        return "network"
    if has_volume and source.path is not None:
        raise InvalidInput(
            f"disk {target}: the source names both a volume and a path",
            hint="give either pool + volume or path",
        )
    if has_volume and (source.pool is None or source.volume is None):
        raise InvalidInput(
            f"disk {target}: a volume source needs both pool and volume",
            hint="give pool and volume, e.g. pool='default', volume='vm1.qcow2'",
        )
    if has_volume:
        return "volume"
    # A host block device must be typed 'block' or libvirt treats it as a regular file.
    if source.path is not None and source.path.startswith("/dev/"):
        return "block"
    return "file"


def build_disk(disk: DiskSpec) -> Element:
    """The ``<disk>`` element for ``disk``. Raises InvalidInput for an ambiguous source."""
    src = disk.source
    source_type = _source_type(src, disk.target)
    el = make("disk", {"type": source_type, "device": disk.device})
    sub(el, "driver", {"name": "qemu", "type": disk.format, "cache": disk.cache})
    source_el: Element | None = None
    if source_type == "volume":
        source_el = sub(el, "source", {"pool": src.pool, "volume": src.volume})
    elif source_type == "network":
        source_el = sub(el, "source", {"protocol": src.protocol, "name": src.name})
        sub(source_el, "host", {"name": src.host, "port": None if src.port is None else str(src.port)})
    elif src.path is not None:
        source_el = sub(el, "source", {"dev" if source_type == "block" else "file": src.path})
    if disk.encryption_secret is not None:
        if source_el is None:
            raise InvalidInput(f"disk {disk.target}: an encrypted disk needs a source")
        enc = sub(source_el, "encryption", {"format": "luks"})
        sub(enc, "secret", {"type": "passphrase", "uuid": disk.encryption_secret})
    sub(el, "target", {"dev": disk.target, "bus": disk.bus})
    if disk.iotune is not None:
        el.append(build_iotune(disk.iotune))
    if disk.readonly:
        sub(el, "readonly")
    if disk.serial is not None:
        sub(el, "serial", text=disk.serial)
    if disk.boot_order is not None:
        sub(el, "boot", {"order": str(disk.boot_order)})
    return el


def _read_source(el: Element) -> DiskSource | None:
    source_type = el.get("type", "file")
    source = el.find("source")
    if source_type == "volume":
        if source is None:
            return None
        return DiskSource(pool=source.get("pool"), volume=source.get("volume"))
    if source_type in ("file", "block"):
        path = None if source is None else source.get("file" if source_type == "file" else "dev")
        return DiskSource(path=path)
    if source_type == "network" and source is not None and source.get("protocol") in _PROTOCOLS:
        host = source.find("host")
        port = host.get("port") if host is not None else None
        return DiskSource(
            protocol=source.get("protocol"),  # type: ignore[arg-type]
            name=source.get("name"),
            host=host.get("name") if host is not None else None,
            port=int(port) if port and port.isdigit() else None,
        )
    return None  # dir, nvme, vhostuser, unknown protocols: not modelled


def parse_disk(el: Element) -> DiskSpec | None:
    """Read a ``<disk>`` element; None for a disk the models cannot describe faithfully.

    Floppies, LUN passthrough, network/dir/nvme sources and formats or buses outside DiskSpec's
    choices are skipped rather than misreported.
    """
    device = el.get("device", "disk")
    target = el.find("target")
    if device not in _DEVICES or target is None or target.get("dev") is None:
        return None
    dev = target.get("dev", "")
    bus = target.get("bus") or next((b for p, b in _BUS_BY_PREFIX if dev.startswith(p)), None)
    driver = el.find("driver")
    fmt = (driver.get("type") if driver is not None else None) or "raw"
    cache = driver.get("cache") if driver is not None else None
    source = _read_source(el)
    if bus not in _BUSES or fmt not in _FORMATS or source is None:
        return None
    fields: dict[str, Any] = {
        "target": dev,
        "bus": bus,
        "device": device,
        "format": fmt,
        "source": source,
        "readonly": el.find("readonly") is not None,
        "cache": cache if cache in _CACHES else None,
        "serial": child_text(el, "serial"),
    }
    iotune = el.find("iotune")
    if iotune is not None:
        fields["iotune"] = parse_iotune(iotune)
    # libvirt writes <encryption> under <source> (kvmhub's way) or, in older XML, under <disk>
    secret = el.find("source/encryption/secret")
    if secret is None:
        secret = el.find("encryption/secret")
    if secret is not None and secret.get("uuid"):
        fields["encryption_secret"] = secret.get("uuid")
    boot = el.find("boot")
    order = boot.get("order") if boot is not None else None
    if order is not None and order.isdigit() and int(order) >= 1:
        fields["boot_order"] = int(order)
    return DiskSpec.model_validate(fields)


def disk_to_xml(disk: DiskSpec) -> str:
    """The ``<disk>`` device XML, e.g. for ``attachDeviceFlags``. Raises InvalidInput for a bad source."""
    return serialize(build_disk(disk))


def disk_from_xml(xml: str) -> DiskSpec:
    """Read one ``<disk>`` device XML. Raises InvalidInput if it is malformed or not modelled by DiskSpec."""
    el = parse(xml, "disk")
    expect_root(el, "disk", "disk")
    disk = parse_disk(el)
    if disk is None:
        raise InvalidInput(
            "cannot read the disk XML",
            cause="kvmhub does not model this kind of disk (device, bus, format or source type)",
        )
    return disk


def disk_targets(domain_xml: str) -> set[str]:
    """Every disk target name (vda, sdb...) of a domain, those DiskSpec cannot model included."""
    root = parse(domain_xml, "domain")
    return {dev for el in root.iterfind("devices/disk/target") if (dev := el.get("dev"))}
