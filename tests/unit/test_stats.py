"""Monitoring without a real host: rates from two samples, sorting, KSM / sysfs readers, the Prometheus
collector and the event stream on libvirt's test:///default driver."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kvmhub.errors import HostProblem, InvalidInput, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv.stats import RawDomainStats, Sample
from kvmhub.services.host import ksm
from kvmhub.services.host import stats as host_stats
from kvmhub.services.monitor import events, metrics
from kvmhub.services.monitor import top as stats

GIB_KIB = 1024**2


def raw(name: str, state: str = "running", values: dict[str, Any] | None = None) -> RawDomainStats:
    return RawDomainStats(name=name, uuid=f"uuid-{name}", state=state, values={"vcpu.current": 2, **(values or {})})


DEVICES = {"block.count": 2, "block.0.name": "vda", "block.1.name": "vdb", "net.count": 1}


def two_samples() -> tuple[Sample, Sample]:
    before = Sample(100.0, [
        raw("busy", values={**DEVICES, "cpu.time": 10_000_000_000, "block.0.wr.bytes": 1000, "block.1.wr.bytes": 0,
                            "block.0.wr.reqs": 10, "block.1.wr.reqs": 0, "block.0.rd.bytes": 0,
                            "block.1.rd.bytes": 0, "net.0.rx.bytes": 500, "net.0.tx.bytes": 0}),
        raw("idle", values={"cpu.time": 5_000_000_000}),
        raw("off", state="shut off"),
    ])  # fmt: skip
    after = Sample(102.0, [
        raw("busy", values={**DEVICES, "cpu.time": 11_800_000_000, "balloon.current": GIB_KIB,
                            "balloon.available": 1_000_000, "balloon.usable": 600_000, "balloon.rss": 700_000,
                            "block.0.wr.bytes": 2_001_000, "block.1.wr.bytes": 2_000_000, "block.0.wr.reqs": 30,
                            "block.1.wr.reqs": 10, "block.0.rd.bytes": 0, "block.1.rd.bytes": 0,
                            "net.0.rx.bytes": 4500, "net.0.tx.bytes": 100}),
        raw("idle", values={"cpu.time": 5_020_000_000}),
        raw("off", state="shut off"),
        raw("new", values={"cpu.time": 1}),
    ])  # fmt: skip
    return before, after


def test_rates_are_deltas_over_the_wall_time_between_samples() -> None:
    rows = {r.name: r for r in stats.compute(*two_samples())}
    busy = rows["busy"]
    assert busy.cpu_percent == 90.0  # 1.8 s of CPU in 2 s
    assert busy.disk_write_bytes == 4_001_000
    assert busy.disk_write_bps == 2_000_000.0
    assert busy.disk_write_iops == 15.0
    assert busy.disk_read_bps == 0.0
    assert busy.net_rx_bps == 2000.0 and busy.net_tx_bps == 50.0
    assert busy.memory_mib == 1024
    assert busy.memory_used_mib == (1_000_000 - 600_000) // 1024
    assert busy.memory_available_mib == 600_000 // 1024
    assert rows["idle"].cpu_percent == 1.0
    assert rows["idle"].disk_write_bps is None  # no disks: no figure rather than 0
    assert rows["off"].cpu_percent is None
    assert rows["new"].cpu_percent is None  # not in the first sample


def test_a_counter_going_backwards_gives_no_rate() -> None:
    before = Sample(0.0, [raw("a", values={"cpu.time": 9_000_000_000})])
    after = Sample(1.0, [raw("a", values={"cpu.time": 1_000_000_000})])
    assert stats.compute(before, after)[0].cpu_percent is None


def test_sorting_busiest_first_and_by_name() -> None:
    rows = stats.compute(*two_samples())
    assert [r.name for r in stats.sort_rows(rows, "cpu")][:2] == ["busy", "idle"]
    assert [r.name for r in stats.sort_rows(rows, "name")] == ["busy", "idle", "new", "off"]
    assert stats.sort_rows(rows, "name", reverse=True)[0].name == "off"
    assert stats.sort_rows(rows, "disk")[0].name == "busy"
    with pytest.raises(InvalidInput, match="colour"):
        stats.sort_rows(rows, "colour")


def _ksm_tree(root: Path, run: str = "0") -> Path:
    base = root / "sys/kernel/mm/ksm"
    base.mkdir(parents=True)
    for name, value in (("run", run), ("pages_shared", "10"), ("pages_sharing", "256"), ("pages_unshared", "3"),
                        ("full_scans", "7")):  # fmt: skip
        (base / name).write_text(value + "\n")
    return base


def test_ksm_read_and_switch_on_a_fake_sysfs(tmp_path: Path) -> None:
    base = _ksm_tree(tmp_path)
    k = ksm.read_local(str(tmp_path))
    assert (k.available, k.state, k.pages_shared, k.pages_sharing) == (True, "off", 10, 256)
    assert k.saved_mib == pytest.approx(256 * 4096 / 1024**2, abs=0.1)
    assert ksm.set_state("on", str(tmp_path)).state == "on"
    assert (base / "run").read_text().strip() == "1"
    with pytest.raises(InvalidInput):
        ksm.set_state("maybe", str(tmp_path))


def test_ksm_missing_is_reported_with_the_reason(tmp_path: Path) -> None:
    k = ksm.read_local(str(tmp_path))
    assert not k.available and k.reason is not None and "CONFIG_KSM" in k.reason
    with pytest.raises(HostProblem, match="not available"):
        ksm.set_state("on", str(tmp_path))


def test_ksm_from_libvirt_parameters() -> None:
    k = ksm.from_libvirt({"shm_pages_shared": 4, "shm_pages_sharing": 8, "shm_full_scans": 1})
    assert k.available and k.state is None and k.pages_sharing == 8
    assert not ksm.from_libvirt({}).available


def test_hugepages_and_temperatures_from_a_fake_sysfs(tmp_path: Path) -> None:
    hp = tmp_path / "sys/kernel/mm/hugepages/hugepages-2048kB"
    hp.mkdir(parents=True)
    (hp / "nr_hugepages").write_text("16\n")
    (hp / "free_hugepages").write_text("12\n")
    chip = tmp_path / "sys/class/hwmon/hwmon0"
    chip.mkdir(parents=True)
    (chip / "name").write_text("coretemp\n")
    (chip / "temp1_input").write_text("45500\n")
    (chip / "temp1_label").write_text("Package id 0\n")
    (chip / "temp2_input").write_text("41000\n")
    pages = host_stats.hugepages(str(tmp_path))
    assert [(p.size_kib, p.total, p.free) for p in pages] == [(2048, 16, 12)]
    temps = host_stats.temperatures(str(tmp_path))
    assert [(t.chip, t.sensor, t.celsius) for t in temps] == [("coretemp", "Package id 0", 45.5),
                                                             ("coretemp", "temp2", 41.0)]  # fmt: skip
    assert host_stats.temperatures(str(tmp_path / "nothing")) == []


def test_host_stats_on_the_test_driver() -> None:
    with Hypervisor("test:///default") as hv:
        s = host_stats.host_stats(hv, sample_seconds=0)
    assert s.cpus == 16 and s.memory_total_mib == 3072
    assert s.vms_running == 1 and s.vms_defined == 1
    assert s.overcommit == pytest.approx(s.vm_memory_running_mib / s.memory_total_mib, abs=0.001)


def test_metrics_on_the_test_driver_parse_with_the_prometheus_parser() -> None:
    with Hypervisor("test:///default") as hv:
        text = generate_latest(metrics.registry(hv)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    info = families["kvmhub_vm_info"].samples
    assert [(s.labels["vm"], s.labels["state"], s.value) for s in info] == [("test", "running", 1.0)]
    assert families["kvmhub_host_cpus"].samples[0].value == 16
    assert families["kvmhub_scrape_error"].samples[0].value == 0
    assert families["kvmhub_vm_cpu_seconds"].type == "counter"


def test_parse_listen() -> None:
    assert metrics.parse_listen("127.0.0.1:9177") == ("127.0.0.1", 9177)
    assert metrics.parse_listen("[::1]:80") == ("::1", 80)
    assert metrics.parse_listen("9000") == ("127.0.0.1", 9000)
    assert metrics.parse_listen("0.0.0.0:9177") == ("0.0.0.0", 9177)  # noqa: S104 - asked for by name
    for bad in ("host:", "host:99999", "x:y"):
        with pytest.raises(InvalidInput):
            metrics.parse_listen(bad)
    for every in (":9177", "[]:9177"):
        with pytest.raises(InvalidInput, match="names no address") as refused:
            metrics.parse_listen(every)
        assert refused.value.hint is not None and "0.0.0.0:9177" in refused.value.hint


def test_metrics_refuses_a_port_without_an_address() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KVMHUB_URI"}
    done = subprocess.run([sys.executable, "-m", "kvmhub.cli.main", "--connect", "test:///default", "metrics",
                           "--listen", ":9177"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "names no address" in done.stderr and "0.0.0.0:9177" in done.stderr
    assert "serving metrics" not in done.stderr


def test_events_stream_on_the_test_driver() -> None:
    hv = Hypervisor("test:///default")
    ready = threading.Event()
    got: list[tuple[str, str, str | None]] = []

    def read() -> None:
        for e in events.stream(hv, "test", duration=10, count=4, on_ready=ready.set):
            got.append((e.kind, e.event, e.detail))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10)
    dom = hv_domains.lookup(hv, "test")
    dom.suspend()
    dom.resume()
    dom.destroy()
    dom.start()
    reader.join(15)
    hv.close()
    assert got == [("lifecycle", "suspended", "paused"), ("lifecycle", "resumed", "unpaused"),
                   ("lifecycle", "stopped", "destroyed"), ("lifecycle", "started", "booted")]  # fmt: skip


def test_events_of_an_unknown_vm() -> None:
    with Hypervisor("test:///default") as hv, pytest.raises(NotFound):
        next(events.stream(hv, "nope", duration=1))


def test_the_plain_rows_have_the_wire_models_fields_in_its_order() -> None:
    from kvmhub.models.stats import VMStats
    from kvmhub.services.monitor.usage import Usage

    assert list(Usage._fields) == list(VMStats.model_fields)
