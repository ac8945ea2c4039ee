"""Monitoring as a user sees it: `top` agrees with what the guest does, `host stats`, events, /metrics.

One booted tiny VM for the module; activity inside it is started through the guest agent (guest-exec),
always bounded by `timeout` in the guest. The events test stops and restarts the VM, so it runs last.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, Runner
from tests.integration.guest import guest_run, guest_start

BURN_S = 25


def guest_busy_ns(host: TestHost, vm: str) -> tuple[int, int]:
    """(busy, total) jiffies of the guest's own /proc/stat cpu line."""
    fields = [int(x) for x in guest_run(host, vm, ["head", "-n1", "/proc/stat"]).out.split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def top_row(kvmhub: Runner, name: str, interval: float) -> dict[str, Any]:
    r = kvmhub("top", "--once", "--json", "--interval", str(interval), timeout=60)
    assert r.code == 0, r.err
    rows = r.json()
    return next(row for row in rows if row["name"] == name)


def qemu_cpu_s(host: TestHost, name: str) -> float:
    """CPU seconds the VM's QEMU process has used, from the host's /proc (the host's own view)."""
    pid = host.inside(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_top_cpu_agrees_with_the_guest_idle_then_busy(
    booted_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    idle = top_row(kvmhub, booted_vm, 2.0)
    assert idle["state"] == "running"
    assert idle["cpu_percent"] is not None and idle["cpu_percent"] < 40, idle

    guest_start(prepared_host, booted_vm, sh(f"timeout {BURN_S} sh -c 'while :; do :; done'"))
    try:
        time.sleep(1.0)
        guest_before = guest_busy_ns(prepared_host, booted_vm)
        qemu_before, t0 = qemu_cpu_s(prepared_host, booted_vm), time.monotonic()
        busy = top_row(kvmhub, booted_vm, 3.0)
        qemu_after, t1 = qemu_cpu_s(prepared_host, booted_vm), time.monotonic()
        guest_after = guest_busy_ns(prepared_host, booted_vm)
    finally:
        guest_run(prepared_host, booted_vm, sh("pkill -f 'while :' || true"), timeout=30)
    guest_percent = 100.0 * (guest_after[0] - guest_before[0]) / max(1, guest_after[1] - guest_before[1])
    host_percent = 100.0 * (qemu_after - qemu_before) / (t1 - t0)
    assert guest_percent > 80, guest_percent  # the guest itself was busy all along
    # high while busy (what the host could give it on 2 shared cores), and far above idle
    assert busy["cpu_percent"] > max(30.0, 3 * idle["cpu_percent"]), (idle, busy)
    # and what the host's /proc says QEMU used over (nearly) the same window; a vCPU thread plus QEMU's own
    assert abs(busy["cpu_percent"] - host_percent) < 20, (busy["cpu_percent"], host_percent)


def test_top_disk_writes_grow_with_a_dd_in_the_guest(
    booted_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    before = top_row(kvmhub, booted_vm, 0)
    size_mib = 16
    code = guest_run(prepared_host, booted_vm,
                     sh(f"timeout 60 dd if=/dev/zero of=/mnt/disk/ddtest bs=64k count={size_mib * 16} conv=fsync"),
                     timeout=90).code
    try:
        assert code == 0
        after = top_row(kvmhub, booted_vm, 0)
    finally:
        guest_run(prepared_host, booted_vm, sh("rm -f /mnt/disk/ddtest; sync"), timeout=30)
    grown = after["disk_write_bytes"] - before["disk_write_bytes"]
    assert grown >= size_mib * 1024**2, grown
    assert after["disk_write_reqs"] > before["disk_write_reqs"]

    # while writes go on (a loop, so they outlast the sampling window however fast the disk is), the rate shows it
    guest_start(prepared_host, booted_vm, sh("timeout 30 sh -c 'while :; do dd if=/dev/zero of=/mnt/disk/ddrate "
                                             "bs=64k count=160 conv=fsync 2>/dev/null; done'"))
    try:
        time.sleep(0.5)
        during = top_row(kvmhub, booted_vm, 2.0)
    finally:
        guest_run(prepared_host, booted_vm, sh("pkill -f of=/mnt/disk/ddrat[e]; while pgrep -x dd >/dev/null; "
                                                "do sleep 0.2; done; rm -f /mnt/disk/ddrate; sync"), timeout=60)
    assert during["disk_write_bps"] > 0, during


def test_top_memory_comes_from_the_balloon(booted_vm: str, kvmhub: Runner) -> None:
    deadline = time.monotonic() + 20
    row = top_row(kvmhub, booted_vm, 1.0)
    while row["memory_used_mib"] is None and time.monotonic() < deadline:
        row = top_row(kvmhub, booted_vm, 1.0)  # the first run asks the guest to report every 2 s
    assert row["memory_mib"] == 256
    assert row["memory_used_mib"] is not None and 0 < row["memory_used_mib"] < 256, row
    assert 0 < row["memory_available_mib"] <= 256
    assert row["memory_rss_mib"] > 0


def test_top_table_and_bad_sort_key(booted_vm: str, kvmhub: Runner) -> None:
    r = kvmhub("top", "--once", "--interval", "0.5", "--sort", "name")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].split()[:3] == ["NAME", "STATE", "CPU%"]
    assert any(line.startswith(booted_vm) for line in r.out.splitlines())
    bad = kvmhub("top", "--once", "--sort", "colour")
    assert bad.code == 2 and "cpu, memory" in bad.err


def test_host_stats_has_sane_values_and_the_overcommit_of_running_vms(booted_vm: str, kvmhub: Runner) -> None:
    r = kvmhub("host", "stats", "--json")
    assert r.code == 0, r.err
    s = r.json()
    assert s["cpus"] >= 1 and s["memory_total_mib"] > 0
    assert 0 <= s["memory_free_mib"] <= s["memory_total_mib"]
    assert s["cpu_percent"] is None or 0 <= s["cpu_percent"] <= 100
    listed = kvmhub("ls", "--json").json()
    running_mib = sum(v["memory_mib"] for v in listed if v["state"] in ("running", "paused"))
    assert s["vms_running"] == sum(1 for v in listed if v["state"] in ("running", "paused"))
    assert s["vm_memory_running_mib"] == running_mib
    assert s["overcommit"] == pytest.approx(running_mib / s["memory_total_mib"], abs=0.001)
    ksm_dir = Path("/sys/kernel/mm/ksm")
    assert s["ksm"]["available"] == ksm_dir.is_dir()
    if ksm_dir.is_dir():
        assert s["ksm"]["state"] == {"0": "off", "1": "on", "2": "unmerge"}[(ksm_dir / "run").read_text().strip()]
    sizes = sorted(p.name for p in Path("/sys/kernel/mm/hugepages").glob("hugepages-*"))
    assert sorted(f"hugepages-{h['size_kib']}kB" for h in s["hugepages"]) == sizes
    human = kvmhub("host", "stats")
    assert human.code == 0 and "overcommit" in human.out


def test_host_setup_ksm_on_and_off(kvmhub: Runner, prepared_host: TestHost) -> None:
    run_file = Path("/sys/kernel/mm/ksm/run")
    if not run_file.exists():
        pytest.skip("kernel without KSM (CONFIG_KSM): /sys/kernel/mm/ksm missing")
    original = run_file.read_text().strip()
    try:
        r = kvmhub("host", "setup", "--ksm", "on")
        assert r.code == 0, r.err
        assert run_file.read_text().strip() == "1"
        assert kvmhub("host", "stats", "--json").json()["ksm"]["state"] == "on"
        r = kvmhub("host", "setup", "--ksm", "off")
        assert r.code == 0 and run_file.read_text().strip() == "0"
        bad = kvmhub("host", "setup", "--ksm", "maybe")
        assert bad.code == 2 and "on or off" in bad.err
    finally:
        run_file.write_text(original + "\n")  # the real kernel's setting, as it was


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _process(host: TestHost, *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*KVMHUB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **host.env()})  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_metrics_parse_and_have_the_documented_names(booted_vm: str, prepared_host: TestHost) -> None:
    port = _free_port()
    with _process(prepared_host, "metrics", "--listen", f"127.0.0.1:{port}") as proc:
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                    text = resp.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert text, proc.stderr.read() if proc.stderr and proc.poll() is not None else "no answer"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = {
        "kvmhub_vm_info", "kvmhub_vm_cpu_seconds", "kvmhub_vm_memory_bytes", "kvmhub_vm_vcpus",
        "kvmhub_vm_disk_write_bytes", "kvmhub_vm_network_receive_bytes", "kvmhub_host_cpus",
        "kvmhub_host_memory_total_bytes", "kvmhub_host_memory_overcommit_ratio", "kvmhub_scrape_error",
    }  # fmt: skip
    for name in documented:
        assert name in families, name
        assert f"`{name}" in readme, f"{name} is not documented in README.md"
    samples = {(s.name, s.labels.get("vm")): s.value for f in families.values() for s in f.samples}
    assert samples[("kvmhub_vm_running", booted_vm)] == 1
    assert samples[("kvmhub_vm_cpu_seconds_total", booted_vm)] > 0
    assert samples[("kvmhub_vm_memory_bytes", booted_vm)] == 256 * 1024**2
    assert samples[("kvmhub_scrape_error", None)] == 0
    assert any(s.name == "kvmhub_vm_disk_write_bytes_total" and s.labels == {"vm": booted_vm, "disk": "vda"}
               for s in families["kvmhub_vm_disk_write_bytes"].samples)  # fmt: skip


def _reader(stream: Any) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next_events(lines: queue.Queue[str], want: list[str], timeout: float) -> list[dict[str, Any]]:
    """Read JSON lines until the lifecycle events in `want` have all come (in order), bounded by `timeout`."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(json.loads(lines.get(timeout=max(0.1, deadline - time.monotonic()))))
        except queue.Empty:
            break
        seen = iter([e["event"] for e in got if e["kind"] == "lifecycle"])
        if all(w in seen for w in want):  # each found after the one before: in this order, others between
            return got
    raise AssertionError(f"wanted lifecycle events {want} in this order, got {got}")


def test_events_stream_pause_resume_stop_start(booted_vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    with _process(prepared_host, "events", "--json", "--vm", booted_vm) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        ready = proc.stderr.readline()  # printed once the subscription is in place
        assert "watching events" in ready, ready
        lines = _reader(proc.stdout)
        assert kvmhub("pause", booted_vm).code == 0
        assert kvmhub("resume", booted_vm).code == 0
        got = _next_events(lines, ["suspended", "resumed"], 30)
        assert all(e["vm"] == booted_vm for e in got)
        assert kvmhub("kill", booted_vm).code == 0
        assert kvmhub("start", booted_vm).code == 0
        got = _next_events(lines, ["stopped", "started"], 60)
        stopped = next(e for e in got if e["event"] == "stopped")
        assert stopped["detail"] == "destroyed"
    assert proc.returncode == 0, proc.returncode


def test_events_of_an_unknown_vm_is_not_found(kvmhub: Runner, prepared_host: TestHost) -> None:
    r = kvmhub("events", "--vm", "no-such-vm", "--for", "1")
    assert r.code == 3, r.err
