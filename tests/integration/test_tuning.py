"""Resource limits measured where they bite: CPU cap and weight from the domain's CPU time, disk throttle from
a `dd` inside the guest, pinning from libvirt's affinity, hotplug and balloon from the guest's own /proc and /sys.

Guests run under TCG on a 2-core host, so they are small and the tolerances are wide (stated per test).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import tuning as hv_tuning
from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_run, guest_start

BUSY = ["/bin/sh", "-c", "while :; do :; done"]


def _dom(host: TestHost, vm: str) -> hv_domains.Domain:
    return hv_domains.lookup(Hypervisor(host.uri, timeout=60), vm)


def wait_agent(host: TestHost, vm: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not _dom(host, vm).agent_ping():
        assert time.monotonic() < deadline, f"guest agent of {vm} never answered"
        time.sleep(1)


def cpu_share(host: TestHost, vms: list[str], seconds: float) -> list[float]:
    """Fraction of one host CPU each VM used over ``seconds`` (domain CPU time, vCPUs + emulator)."""
    doms = [_dom(host, vm) for vm in vms]
    before = [hv_tuning.cpu_time_ns(d) for d in doms]
    start = time.monotonic()
    time.sleep(seconds)
    after = [hv_tuning.cpu_time_ns(d) for d in doms]
    elapsed = time.monotonic() - start
    return [(a - b) / 1e9 / elapsed for a, b in zip(after, before, strict=True)]


def xml_of(host: TestHost, vm: str) -> tuple[str, str]:
    return host.virsh("dumpxml", vm).stdout, host.virsh("dumpxml", "--inactive", vm).stdout


def cgroup_file(vm: str, controller: str, rel: str) -> Path | None:
    found = sorted(Path(f"/sys/fs/cgroup/{controller}/machine").glob(f"qemu-*-{vm}.libvirt-qemu/{rel}"))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    """One booted tiny guest with hotplug headroom (2 vCPUs, 512M), shared by the module's tests."""
    name = "vm-tuning"
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--cpus", "1", "--max-cpus", "2",
               "--memory", "256M", "--max-memory", "512M", "--wait", "--timeout", "240")
    assert r.code == 0, r.err
    try:
        wait_agent(prepared_host, name)
        yield name
    finally:
        kvmhub("rm", name)


def test_create_takes_every_limit_and_show_lists_them(prepared_host: TestHost, kvmhub: Runner) -> None:
    name = "vm-limits-off"
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--no-start", "--cpus", "1",
               "--max-cpus", "2", "--memory", "128M", "--max-memory", "256M", "--cpu-weight", "512",
               "--cpu-cap", "50", "--pin", "0:1", "--emulator-pin", "0", "--memory-limit", "1G",
               "--disk-bps", "vda:read=4M,write=2M", "--disk-iops", "vda:300", "--io-weight", "300",
               "--net-bw", "1M/512K")
    try:
        assert r.code == 0, r.err
        shown = kvmhub("show", name, "--json")
        assert shown.code == 0, shown.err
        lim = shown.json()["limits"]
        assert (lim["vcpus"], lim["max_vcpus"], lim["memory_mib"], lim["max_memory_mib"]) == (1, 2, 128, 256)
        assert (lim["cpu_weight"], lim["cpu_cap_percent"], lim["emulator_pin"]) == (512, 50, "0")
        assert lim["vcpu_pins"] == [{"vcpu": 0, "cpuset": "1"}]
        assert (lim["memory_limit_mib"], lim["io_weight"]) == (1024, 300)
        assert lim["disk_io"]["vda"]["read_bytes_sec"] == 4 * 1024**2
        assert lim["disk_io"]["vda"]["write_bytes_sec"] == 2 * 1024**2
        assert lim["disk_io"]["vda"]["total_iops_sec"] == 300
        (bw,) = lim["net_bandwidth"].values()
        assert (bw["inbound_kbs"], bw["outbound_kbs"]) == (1049, 525)  # bytes/s to libvirt's 1000-byte KB/s
        # libvirt's own view agrees
        sched = prepared_host.virsh("schedinfo", "--config", name).stdout
        assert re.search(r"cpu_shares\s*:\s*512", sched) and re.search(r"vcpu_quota\s*:\s*50000", sched)
        text = kvmhub("show", name).out
        assert "CPU cap 50 %" in text and "vCPU 0 pinned to 1" in text
        # a shut-off VM takes changes into its definition only
        r = kvmhub("set", name, "--cpu-weight", "2048", "--cpus", "2")
        assert r.code == 0, r.err
        assert r.out.count("takes effect after restart") == 3, r.out
        assert "CPU cap 50 %: takes effect after restart (kept for 2 vCPUs)" in r.out
        lim = kvmhub("show", name, "--json").json()["limits"]
        assert (lim["cpu_weight"], lim["vcpus"], lim["cpu_cap_percent"]) == (2048, 2, 50)
    finally:
        kvmhub("rm", name)


def test_bad_values_are_refused_with_the_range_and_change_nothing(
    vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    before = xml_of(prepared_host, vm)
    cases = [
        (["--cpu-cap", "300"], "1 % to 100 %"),
        (["--pin", "0:99"], "host CPUs 0 to"),
        (["--pin", "5:0"], "vCPU 0 to 1"),
        (["--cpus", "3"], "1 to 2"),
        (["--memory", "4G"], "32 MiB to 512 MiB"),
        (["--cpu-weight", "1"], "2 to 262144"),
        (["--io-weight", "5000"], "100 to 1000"),
        (["--memory-limit", "64M"], "at least the VM's memory"),
        # a good value first: nothing may be applied when a later one is refused
        (["--cpu-weight", "700", "--disk-bps", "vdz:1M"], "no disk 'vdz'"),
    ]
    for args, valid in cases:
        r = kvmhub("set", vm, *args)
        assert r.code == 2, (args, r.out, r.err)
        assert valid in r.err, (args, r.err)
    assert xml_of(prepared_host, vm) == before


def test_cpu_cap_holds_a_busy_guest_near_25_percent(vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    pid = guest_start(prepared_host, vm, BUSY)
    try:
        (free,) = cpu_share(prepared_host, [vm], 8)
        r = kvmhub("set", vm, "--cpu-cap", "25")
        assert r.code == 0 and "CPU cap 25 %: applied live" in r.out, r.out + r.err
        quota = cgroup_file(vm, "cpu", "vcpu0/cpu.cfs_quota_us")
        if quota is not None:  # cgroup v1 layout: the kernel's own view agrees with libvirt's
            assert quota.read_text().strip() == "25000"
        (capped,) = cpu_share(prepared_host, [vm], 12)
        print(f"busy guest: {free:.2f} CPU uncapped, {capped:.2f} CPU capped at 25 %")
        # Tolerance: +7 points for QEMU's emulator thread, which the per-vCPU quota does not cover.
        assert capped <= 0.32, capped
        assert free > capped * 1.5, (free, capped)
    finally:
        assert kvmhub("set", vm, "--cpu-cap", "0").code == 0
        guest_run(prepared_host, vm, ["/bin/kill", str(pid)])


def test_pinning_shows_in_the_vcpu_affinity(vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    r = kvmhub("set", vm, "--pin", "0:1", "--emulator-pin", "0")
    assert r.code == 0, r.err
    assert "vCPU 0 pinned to 1: applied live" in r.out
    assert hv_tuning.vcpu_affinity(_dom(prepared_host, vm))[0] == {1}
    assert re.search(r"^\s*0\s+1\s*$", prepared_host.virsh("vcpupin", vm).stdout, re.M)
    assert "1" in prepared_host.virsh("vcpupin", vm, "--config").stdout
    assert prepared_host.virsh("emulatorpin", vm).stdout.split()[-1] == "0"
    cpuset = cgroup_file(vm, "cpuset", "vcpu0/cpuset.cpus")
    if cpuset is not None:  # the kernel's view agrees with libvirt's
        assert cpuset.read_text().strip() == "1"
    assert kvmhub("set", vm, "--pin", "0:0-1", "--emulator-pin", "0-1").code == 0


def test_vcpu_hotplug_is_seen_by_the_guest(vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    assert guest_run(prepared_host, vm, ["/bin/cat", "/sys/devices/system/cpu/online"]).out.strip() == "0"
    r = kvmhub("set", vm, "--cpus", "2")
    assert r.code == 0 and "vCPUs 2: applied live" in r.out, r.out + r.err
    assert guest_run(prepared_host, vm, ["/bin/cat", "/sys/devices/system/cpu/online"]).out.strip() == "0-1"
    assert "processor\t: 1" in guest_run(prepared_host, vm, ["/bin/cat", "/proc/cpuinfo"]).out
    assert kvmhub("show", vm, "--json").json()["limits"]["vcpus"] == 2
    assert prepared_host.virsh("vcpucount", vm, "--config", "--current").stdout.strip() == "2"


def _mem_total_kib(host: TestHost, vm: str) -> int:
    text = guest_run(host, vm, ["/bin/grep", "MemTotal", "/proc/meminfo"]).out
    return int(text.split()[1])


def _wait_mem(host: TestHost, vm: str, ok: Callable[[int], bool], timeout: float = 45) -> int:
    """Poll the guest's MemTotal until ``ok`` (the balloon driver moves pages over seconds under TCG)."""
    deadline = time.monotonic() + timeout
    while True:
        total = _mem_total_kib(host, vm)
        if ok(total) or time.monotonic() > deadline:
            return total
        time.sleep(1)


def test_balloon_and_dimm_hotplug_are_seen_by_the_guest(vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    start = _mem_total_kib(prepared_host, vm)
    r = kvmhub("set", vm, "--memory", "192M")
    assert r.code == 0 and "memory 192 MiB: applied live" in r.out, r.out + r.err
    # Tolerance: at least 48 of the 64 MiB must leave the guest within 45 s.
    ballooned = _wait_mem(prepared_host, vm, lambda kib: start - kib >= 48 * 1024)
    assert start - ballooned >= 48 * 1024, (start, ballooned)
    r = kvmhub("set", vm, "--memory", "384M")
    assert r.code == 0 and "memory 384 MiB: applied live" in r.out and "DIMM" in r.out, r.out + r.err
    grown = _wait_mem(prepared_host, vm, lambda kib: kib - start >= 100 * 1024)
    print(f"MemTotal: {start} KiB, ballooned to 192M: {ballooned} KiB, DIMM to 384M: {grown} KiB")
    assert grown - start >= 100 * 1024, (start, grown)
    # show reports the balloon's actual size, which libvirt learns from QEMU's events a little later
    deadline = time.monotonic() + 30
    while (shown := kvmhub("show", vm, "--json").json()["limits"])["memory_mib"] != 384:
        assert time.monotonic() < deadline, shown
        time.sleep(1)
    assert shown["max_memory_mib"] == 512


def test_disk_bps_limit_caps_dd_in_the_guest(vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    limit = 2 * 1024**2
    r = kvmhub("set", vm, "--disk-bps", "vda:read=2M")
    assert r.code == 0 and "applied live" in r.out, r.out + r.err
    assert hv_tuning.block_iotune(_dom(prepared_host, vm), "vda")["read_bytes_sec"] == limit
    try:
        # busybox dd prints no rate here: time it with the guest's own clock (/proc/uptime, 10 ms steps)
        out = guest_run(prepared_host, vm, ["/bin/sh", "-c", "cat /proc/uptime; dd if=/dev/vda of=/dev/null "
                                            "bs=64k count=160 iflag=direct 2>/dev/null; cat /proc/uptime"],
                        timeout=120).out
        start, end = (float(line.split()[0]) for line in out.split("\n") if line.strip())
        rate = 160 * 64 * 1024 / (end - start)
        print(f"dd read {rate / 1024**2:.2f} MiB/s under a 2 MiB/s limit")
        # Tolerance: QEMU's throttle lets one tenth of a second's budget burst; allow 25 % over, and it must bite.
        assert 0.5 * limit <= rate <= 1.25 * limit, rate
    finally:
        assert kvmhub("set", vm, "--disk-bps", "vda:0").code == 0


def test_net_bandwidth_applies_or_names_the_missing_kernel_modules(
    vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    before = xml_of(prepared_host, vm)
    r = kvmhub("set", vm, "--net-bw", "1M/1M")
    if r.code == 0:
        assert "applied live" in r.out
        assert "<bandwidth>" in xml_of(prepared_host, vm)[1]
        assert kvmhub("set", vm, "--net-bw", "0/0").code == 0
    else:
        assert r.code == 5, r.err
        assert "modprobe" in r.err and "sch_sfq" in r.err
        assert xml_of(prepared_host, vm)[1] == before[1]


@pytest.fixture
def two_busy_guests(prepared_host: TestHost, kvmhub: Runner) -> Iterator[list[str]]:
    names = ["vm-weight-a", "vm-weight-b"]
    try:
        for name, weight in zip(names, ("1024", "3072"), strict=True):
            r = kvmhub("create", name, "--image", "tiny", "--memory", "128M", "--pin", "0:1",
                       "--cpu-weight", weight, "--wait", "--timeout", "240")
            assert r.code == 0, r.err
        for name in names:
            wait_agent(prepared_host, name)
            guest_start(prepared_host, name, BUSY)
        yield names
    finally:
        for name in names:
            kvmhub("rm", name)


def test_cpu_weights_1_to_3_share_a_host_cpu_about_1_to_3(
    two_busy_guests: list[str], prepared_host: TestHost
) -> None:
    time.sleep(3)
    low, high = cpu_share(prepared_host, two_busy_guests, 15)
    print(f"weights 1:3 on one host CPU: {low:.2f} vs {high:.2f} CPU, ratio {high / low:.2f}")
    # Tolerance: 2.0 to 4.5, since the emulator threads are not pinned and the other host CPU adds noise.
    assert 2.0 <= high / low <= 4.5, (low, high)
