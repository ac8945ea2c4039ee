"""Limit options are parsed and range-checked before anything on the host changes."""

from __future__ import annotations

import pytest

from kvmhub.errors import InvalidInput, exit_code
from kvmhub.models import DiskSource, DiskSpec, IOTune, NICSpec, VMSpec
from kvmhub.models.requests_vm import Change, LimitsRequest
from kvmhub.services.vm.limits import limits_of
from kvmhub.services.vm.tuning import (
    apply_to_spec,
    parse_disk_limit,
    parse_net_limit,
    parse_pin,
)
from kvmhub.validate import parse_cpuset


@pytest.mark.parametrize(("text", "cpus"), [("0", {0}), ("0-2,5", {0, 1, 2, 5}), ("3", {3}), ("1-1", {1})])
def test_cpusets(text: str, cpus: set[int]) -> None:
    assert parse_cpuset(text, 8) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-", "3-1", "0,,1", "-1", "8", "0-8"])
def test_bad_cpusets_name_the_valid_cpus(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_cpuset(text, 8)
    assert exit_code(info.value) == 2
    assert "0 to 7" in str(info.value) or "backwards" in str(info.value)


def test_pins() -> None:
    assert parse_pin("1:0-1", host_cpus=2, max_vcpus=2) == (1, {0, 1})
    with pytest.raises(InvalidInput, match="vCPU 0 to 1"):
        parse_pin("2:0", host_cpus=2, max_vcpus=2)
    with pytest.raises(InvalidInput, match="VCPU:CPUSET"):
        parse_pin("0", host_cpus=2, max_vcpus=2)


def test_disk_limits() -> None:
    assert parse_disk_limit("vda:10M", size=True) == (
        "vda", {"total_bytes_sec": 10 * 1024**2, "read_bytes_sec": 0, "write_bytes_sec": 0})
    assert parse_disk_limit("read=5M,write=1M", size=True) == (
        None, {"read_bytes_sec": 5 * 1024**2, "write_bytes_sec": 1024**2, "total_bytes_sec": 0})
    assert parse_disk_limit("vdb:read=100", size=False) == ("vdb", {"read_iops_sec": 100, "total_iops_sec": 0})
    assert parse_disk_limit("vda:0", size=False)[1]["total_iops_sec"] == 0
    for bad in ("vda:up=1M", "vda:total=1M,read=1M", "vda:ten"):
        with pytest.raises(InvalidInput):
            parse_disk_limit(bad, size=not bad.endswith("ten"))


def test_net_limits_take_a_mac_or_index() -> None:
    assert parse_net_limit("52:54:00:aa:bb:cc:1M/") == ("52:54:00:aa:bb:cc", None, {"inbound.average": 1049})
    assert parse_net_limit("0:/500K")[2] == {"outbound.average": 512}
    assert parse_net_limit("0/0")[2] == {"inbound.average": 0, "outbound.average": 0}
    with pytest.raises(InvalidInput, match="inbound/outbound"):
        parse_net_limit("1M")


SPEC = VMSpec(
    name="v", vcpus=2, memory_mib=256,
    disks=[DiskSpec(target="vda", source=DiskSource(path="/d.img")),
           DiskSpec(target="vdb", readonly=True, source=DiskSource(path="/seed.iso"))],
    nics=[NICSpec(network="lab", mac="52:54:00:00:00:01")],
)


def test_create_limits_land_in_the_spec() -> None:
    req = LimitsRequest(cpu_weight=3072, cpu_cap=50, pins=["1:0"], emulator_pin="1", memory_limit="1G",
                        disk_bps=["4M"], disk_iops=["vda:read=10"], io_weight=200, net_bw=["2M/1M"])
    spec = apply_to_spec(SPEC, req, host_cpus=2)
    assert spec.cputune is not None
    assert (spec.cputune.shares, spec.cputune.period, spec.cputune.quota) == (3072, 100000, 25000)
    assert spec.disks[0].iotune == IOTune(total_bytes_sec=4 * 1024**2, read_iops_sec=10)
    assert spec.disks[1].iotune is None  # the read-only seed is left alone
    lim = limits_of(spec)
    assert (lim.cpu_cap_percent, lim.memory_limit_mib, lim.io_weight, lim.emulator_pin) == (50, 1024, 200, "1")
    assert lim.net_bandwidth["52:54:00:00:00:01"].inbound_kbs == 2098


@pytest.mark.parametrize(
    ("req", "valid"),
    [
        (LimitsRequest(cpu_cap=201), "2 % to 200 %"),
        (LimitsRequest(cpu_cap=1), "2 % to 200 %"),
        (LimitsRequest(cpu_weight=1), "2 to 262144"),
        (LimitsRequest(io_weight=99), "100 to 1000"),
        (LimitsRequest(pins=["0:2"]), "host CPUs 0 to 1"),
        (LimitsRequest(memory_limit="128M"), "at least the VM's memory"),
        (LimitsRequest(disk_bps=["vdz:1M"]), "its disks: vda, vdb"),
        (LimitsRequest(net_bw=["3:1M/1M"]), "0 to 0"),
    ],
)
def test_out_of_range_limits_are_refused_with_the_range(req: LimitsRequest, valid: str) -> None:
    with pytest.raises(InvalidInput) as info:
        apply_to_spec(SPEC, req, host_cpus=2)
    assert valid in str(info.value)
    assert exit_code(info.value) == 2


def test_change_lines_say_when_they_take_effect() -> None:
    assert Change(setting="vCPUs", value="2", live=True).line() == "vCPUs 2: applied live"
    line = Change(setting="memory", value="1 GiB", live=False, note="VM is off").line()
    assert line == "memory 1 GiB: takes effect after restart (VM is off)"
