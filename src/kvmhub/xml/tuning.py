"""Resource limits in domain XML: ``<cputune>``, ``<memtune>``, ``<blkiotune>``, a disk's ``<iotune>`` and a
NIC's ``<bandwidth>``; plus the vCPU/memory hotplug headroom (``<vcpu current>``, ``<maxMemory>``, DIMMs).
"""

from __future__ import annotations

from typing import Any

from kvmhub.errors import InvalidInput
from kvmhub.models import Bandwidth, CPUTune, IOTune, VCPUPin, VMSpec
from kvmhub.xml._util import Element, child_text, make, scaled_bytes, sub, to_int

_KIB = 1024
_MIB = 1024 * 1024
# libvirt's "no limit" for memtune values (VIR_DOMAIN_MEMORY_PARAM_UNLIMITED), in KiB.
MEMORY_UNLIMITED_KIB = 9007199254740991
IOTUNE_FIELDS = tuple(IOTune.model_fields)


def build_cputune(tune: CPUTune) -> Element:
    """The ``<cputune>`` element for ``tune``."""
    el = make("cputune")
    for tag, value in (("shares", tune.shares), ("period", tune.period), ("quota", tune.quota)):
        if value is not None:
            sub(el, tag, text=str(value))
    for pin in tune.vcpupin:
        sub(el, "vcpupin", {"vcpu": str(pin.vcpu), "cpuset": pin.cpuset})
    if tune.emulatorpin is not None:
        sub(el, "emulatorpin", {"cpuset": tune.emulatorpin})
    return el


def parse_cputune(el: Element) -> CPUTune:
    """Read ``<cputune>``; elements CPUTune does not model (iothreads, emulator quota...) are ignored."""
    fields: dict[str, Any] = {}
    for tag in ("shares", "period", "quota"):
        text = child_text(el, tag)
        if text is not None:
            fields[tag] = to_int(text, f"<cputune><{tag}>")
    fields["vcpupin"] = [
        VCPUPin(vcpu=to_int(pin.get("vcpu"), "<vcpupin vcpu>"), cpuset=pin.get("cpuset") or "")
        for pin in el.iterfind("vcpupin")
    ]
    emulator = el.find("emulatorpin")
    if emulator is not None:
        fields["emulatorpin"] = emulator.get("cpuset") or ""
    return CPUTune.model_validate(fields)


def build_iotune(tune: IOTune) -> Element:
    """A disk's ``<iotune>`` element; unset fields are left out."""
    el = make("iotune")
    for name in IOTUNE_FIELDS:
        value = getattr(tune, name)
        if value is not None:
            sub(el, name, text=str(value))
    return el


def parse_iotune(el: Element) -> IOTune:
    """Read a disk's ``<iotune>``; the burst (``*_max``) and group settings are not modelled."""
    fields = {name: to_int(text, f"<iotune><{name}>") for name in IOTUNE_FIELDS
              if (text := child_text(el, name)) is not None}
    return IOTune.model_validate(fields)


def build_bandwidth(bw: Bandwidth) -> Element:
    """A NIC's ``<bandwidth>`` element."""
    el = make("bandwidth")
    if bw.inbound_kbs is not None:
        sub(el, "inbound", {"average": str(bw.inbound_kbs)})
    if bw.outbound_kbs is not None:
        sub(el, "outbound", {"average": str(bw.outbound_kbs)})
    return el


def parse_bandwidth(el: Element) -> Bandwidth:
    """Read a NIC's ``<bandwidth>`` averages; peak, burst and floor are not modelled."""
    fields: dict[str, Any] = {}
    for direction in ("inbound", "outbound"):
        found = el.find(direction)
        if found is not None and found.get("average") is not None:
            fields[f"{direction}_kbs"] = to_int(found.get("average"), f"<bandwidth><{direction} average>")
    return Bandwidth.model_validate(fields)


def check_headroom(spec: VMSpec) -> None:
    """Raise InvalidInput when the boot values exceed the hotplug ceilings of ``spec``."""
    if spec.max_vcpus is not None and spec.vcpus > spec.max_vcpus:
        raise InvalidInput(
            f"{spec.vcpus} vCPUs is above the maximum of {spec.max_vcpus}",
            hint=f"give 1 to {spec.max_vcpus} vCPUs, or raise the maximum",
        )
    if spec.max_memory_mib is not None and spec.memory_mib > spec.max_memory_mib:
        raise InvalidInput(
            f"memory {spec.memory_mib} MiB is above the maximum of {spec.max_memory_mib} MiB",
            hint=f"give at most {spec.max_memory_mib} MiB, or raise the maximum",
        )
    if spec.current_memory_mib is not None and spec.current_memory_mib > spec.memory_mib:
        raise InvalidInput(
            f"current memory {spec.current_memory_mib} MiB is above the memory size {spec.memory_mib} MiB"
        )
    if spec.memory_mib - sum(spec.dimms_mib) < 16:
        raise InvalidInput("hot-plugged DIMMs add up to more than the VM's memory")


def build_sizes(root: Element, spec: VMSpec) -> None:
    """``<maxMemory>``, ``<memory>``, ``<currentMemory>``, ``<blkiotune>``, ``<memtune>``, ``<vcpu>``,
    ``<cputune>``, in libvirt's order."""
    check_headroom(spec)
    if spec.max_memory_mib is not None:
        sub(root, "maxMemory", {"slots": str(spec.memory_slots), "unit": "KiB"}, text=str(spec.max_memory_mib * _KIB))
    sub(root, "memory", {"unit": "KiB"}, text=str(spec.memory_mib * _KIB))
    current = spec.current_memory_mib if spec.current_memory_mib is not None else spec.memory_mib
    sub(root, "currentMemory", {"unit": "KiB"}, text=str(current * _KIB))
    if spec.io_weight is not None:
        sub(sub(root, "blkiotune"), "weight", text=str(spec.io_weight))
    if spec.memory_limit_mib is not None:
        sub(sub(root, "memtune"), "hard_limit", {"unit": "KiB"}, text=str(spec.memory_limit_mib * _KIB))
    if spec.max_vcpus is None:
        sub(root, "vcpu", text=str(spec.vcpus))
    else:
        sub(root, "vcpu", {"current": str(spec.vcpus)}, text=str(spec.max_vcpus))
    if spec.cputune is not None:
        root.append(build_cputune(spec.cputune))


def build_numa(cpu: Element, spec: VMSpec) -> None:
    """The single NUMA cell QEMU needs for DIMM hotplug, holding the boot memory and every vCPU."""
    last = (spec.max_vcpus or spec.vcpus) - 1
    boot_kib = (spec.memory_mib - sum(spec.dimms_mib)) * _KIB
    numa = sub(cpu, "numa")
    sub(numa, "cell", {"id": "0", "cpus": f"0-{last}" if last else "0", "memory": str(boot_kib), "unit": "KiB"})


def build_dimms(devices: Element, spec: VMSpec) -> None:
    """One ``<memory model='dimm'>`` device per hot-plugged DIMM."""
    for size in spec.dimms_mib:
        devices.append(dimm_element(size))


def dimm_element(size_mib: int) -> Element:
    """A DIMM device of ``size_mib`` on NUMA node 0, e.g. for ``attachDeviceFlags``."""
    el = make("memory", {"model": "dimm"})
    target = sub(el, "target")
    sub(target, "size", {"unit": "KiB"}, text=str(size_mib * _KIB))
    sub(target, "node", text="0")
    return el


def _mib(el: Element, where: str) -> int:
    return scaled_bytes(el, where, "KiB") // _MIB


def parse_sizes(root: Element, fields: dict[str, Any]) -> None:
    """Fill ``fields`` with vCPU, memory and tuning values read from a ``<domain>``."""
    vcpu = root.find("vcpu")
    if vcpu is not None:
        total = to_int(vcpu.text, "the vcpu count")
        current = vcpu.get("current")
        fields["vcpus"] = to_int(current, "the current vcpu count") if current is not None else total
        if current is not None:
            fields["max_vcpus"] = total
    memory = root.find("memory")
    if memory is not None:
        fields["memory_mib"] = _mib(memory, "the memory size")
    current_mem = root.find("currentMemory")
    if current_mem is not None and memory is not None:
        current_mib = _mib(current_mem, "the current memory size")
        if current_mib != fields["memory_mib"]:
            fields["current_memory_mib"] = current_mib
    max_memory = root.find("maxMemory")
    if max_memory is not None:
        fields["max_memory_mib"] = _mib(max_memory, "the maximum memory")
        fields["memory_slots"] = to_int(max_memory.get("slots"), "<maxMemory slots>")
    fields["dimms_mib"] = [
        _mib(size, "a DIMM size")
        for dimm in root.iterfind("devices/memory[@model='dimm']")
        if (size := dimm.find("target/size")) is not None
    ]
    cputune = root.find("cputune")
    if cputune is not None:
        fields["cputune"] = parse_cputune(cputune)
    hard = root.find("memtune/hard_limit")
    if hard is not None and scaled_bytes(hard, "the memory hard limit", "KiB") < MEMORY_UNLIMITED_KIB * _KIB:
        fields["memory_limit_mib"] = _mib(hard, "the memory hard limit")
    weight = child_text(root, "blkiotune/weight")
    if weight is not None:
        fields["io_weight"] = to_int(weight, "<blkiotune><weight>")
