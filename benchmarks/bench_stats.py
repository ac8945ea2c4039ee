"""Stats collection: `kvmhub top --once --json` vs a bare getAllDomainStats, and the /metrics scrape time.

A private test host gets 500 defined domains (minimal XML, 64 MiB, no disk). Two scenarios, each timed
interleaved:

* ``defined``: all 500 shut off.
* ``running``: as many as fit of them started (TCG guests with no boot disk: SeaBIOS waits, mostly halted),
  up to ``--running`` (default 100), bounded by ``--start-budget`` seconds and by the host's free memory.

Contenders per round: ``kvmhub top --once --json --interval 0`` (one sample, whole process) against a bare
libvirt-python process that opens the connection, makes the same getAllDomainStats call and prints its rows
as JSON (ratio key ``kvmhub/getAllDomainStats``); the same in-process (one ``Sampler.refresh`` plus JSON vs
one bare call, no process start-up); and one HTTP scrape of a running ``kvmhub metrics`` exporter.

Run from the repo root: ``.venv/bin/python benchmarks/bench_stats.py [--runs N] [--json]``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from benchmarks._common import (
    BYTECODE_NOTE,
    KVMHUB,
    PYTHON,
    CommandFailed,
    Samples,
    accelerator_name,
    kvmhub_env,
    log,
    parse_args,
    private_host,
    report,
    script,
)
from kvmhub.testing import TestHost

DOMAINS = 500
PREFIX = "bs"
SCRAPE_TARGET_MS = 200.0
BARE = (
    "import json, sys, libvirt\n"
    "conn = libvirt.open(sys.argv[1])\n"
    "rows = conn.getAllDomainStats(int(sys.argv[2]), 0)\n"
    "print(json.dumps([{'name': d.name(), 'uuid': d.UUIDString(), **s} for d, s in rows]))\n"
)


def domain_xml(i: int, domain_type: str) -> str:
    return (
        f"<domain type='{domain_type}'><name>{PREFIX}{i:04d}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type><boot dev='network'/></os><features><acpi/></features>"
        "<devices><memballoon model='virtio'/></devices></domain>"
    )


def define_domains(host: TestHost, count: int, domain_type: str) -> None:
    start = time.perf_counter()
    conn = host.connect()
    try:
        for i in range(count):
            conn.defineXML(domain_xml(i, domain_type))
    finally:
        conn.close()
    log(f"defined {count} domains in {time.perf_counter() - start:.1f} s")


def _mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def start_domains(host: TestHost, want: int, budget_s: float, reserve_mib: int = 3072) -> tuple[int, str]:
    """Start up to `want` of the domains, within `budget_s` seconds and leaving `reserve_mib` free."""
    conn = host.connect()
    started = 0
    why = f"all {want} wanted"
    deadline = time.monotonic() + budget_s
    try:
        for i in range(want):
            if time.monotonic() > deadline:
                why = f"start budget of {budget_s:.0f} s used up"
                break
            if _mem_available_mib() < reserve_mib:
                why = f"host memory: under {reserve_mib} MiB left"
                break
            conn.lookupByName(f"{PREFIX}{i:04d}").create()
            started += 1
    finally:
        conn.close()
    log(f"started {started} domains ({why})")
    return started, why


def remove_domains(host: TestHost) -> None:
    conn = host.connect()
    try:
        for dom in conn.listAllDomains(0):
            if str(dom.name()).startswith(PREFIX):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


def timed_process(argv: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Exporter:
    """`kvmhub metrics` on a free loopback port, stopped by close()."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}/metrics"
        port = self.url.rsplit(":", 1)[1].split("/")[0]
        self.proc = subprocess.Popen([KVMHUB, "metrics", "--listen", f"127.0.0.1:{port}"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.scrape()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise CommandFailed("the metrics exporter did not answer within 30 s") from None
                time.sleep(0.2)

    def scrape(self) -> tuple[float, str]:
        start = time.perf_counter()
        with urllib.request.urlopen(self.url, timeout=30) as resp:  # noqa: S310 - loopback only
            text = resp.read().decode()
        return time.perf_counter() - start, text

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def in_process(host: TestHost) -> tuple[Callable[[], object], Callable[[], object], Callable[[], None]]:
    """(kvmhub refresh, bare call, close): each a callable doing one getAllDomainStats round."""
    import libvirt

    from kvmhub.hv import Hypervisor
    from kvmhub.hv.stats import STATS_GROUPS
    from kvmhub.services.monitor import top as stats

    hv = Hypervisor(host.uri)
    sampler = stats.Sampler(hv)
    conn = libvirt.open(host.uri)

    def kvmhub_refresh() -> object:
        return json.dumps([r.model_dump(mode="json") for r in stats.sort_rows(sampler.refresh(), "cpu")])

    def bare() -> object:
        return conn.getAllDomainStats(STATS_GROUPS, 0)

    def close() -> None:
        hv.close()
        conn.close()

    return kvmhub_refresh, bare, close


def measure(host: TestHost, env: dict[str, str], samples: Samples, suffix: str, runs: int, warmup: int) -> None:
    """One scenario: whole processes, in-process calls and scrapes, interleaved round by round."""
    from kvmhub.hv.stats import STATS_GROUPS

    procs = {
        f"kvmhub{suffix}": [KVMHUB, "top", "--once", "--json", "--interval", "0"],
        f"getAllDomainStats{suffix}": [PYTHON, "-c", BARE, host.uri, str(STATS_GROUPS)],
    }
    startups = {  # process start-up and imports alone, to tell them from the collection itself
        # what `top --once` loads (answered before the full CLI, see kvmhub.cli.fast_local)
        f"kvmhub-startup{suffix}": [PYTHON, "-c", "import kvmhub.cli.entry, kvmhub.cli.fast, kvmhub.cli.fast_local, "
                                    "kvmhub.services.connect, kvmhub.services.monitor.usage"],
        f"getAllDomainStats-startup{suffix}": [PYTHON, "-c", "import json, sys, libvirt"],
    }
    refresh, bare, close = in_process(host)
    exporter = Exporter(env)
    try:
        rows = {name: len(json.loads(timed_process(argv, env)[1])) for name, argv in procs.items()}
        log(f"rows per call: {rows}")
        if len(set(rows.values())) != 1:
            raise CommandFailed(f"kvmhub and the bare call list different domains: {rows}")
        for i in range(warmup + runs):
            row = []
            for name, argv in procs.items():
                seconds, _ = timed_process(argv, env)
                if i >= warmup:
                    samples.add(name, seconds)
                row.append(f"{name} {seconds * 1000:.0f} ms")
            for name, argv in startups.items():
                seconds, _ = timed_process(argv, env)
                if i >= warmup:
                    samples.add(name, seconds)
            for name, fn in ((f"kvmhub-inproc{suffix}", refresh), (f"getAllDomainStats-inproc{suffix}", bare)):
                start = time.perf_counter()
                fn()
                seconds = time.perf_counter() - start
                if i >= warmup:
                    samples.add(name, seconds)
                row.append(f"{name} {seconds * 1000:.1f} ms")
            seconds, _ = exporter.scrape()
            if i >= warmup:
                samples.add(f"scrape{suffix}", seconds)
            row.append(f"scrape{suffix} {seconds * 1000:.1f} ms")
            log(("warm-up: " if i < warmup else f"run {i - warmup + 1}/{runs}: ") + ", ".join(row))
    finally:
        exporter.close()
        close()


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_stats",
        [
            (("--running",), {"type": int, "default": 100, "help": "VMs to start for the running case"}),
            (("--start-budget",), {"type": float, "default": 240.0, "help": "seconds allowed for starting them"}),
            (("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"}),
            (("--domains",), {"type": int, "default": DOMAINS, "help": f"defined domains (default {DOMAINS})"}),
        ],
        smoke={"domains": 10, "running": 2, "start_budget": 120.0},
    )
    from kvmhub.services.host.accel import domain_type

    accel = accelerator_name()
    samples = Samples(order=[])
    notes: dict[str, Any] = {"bytecode": BYTECODE_NOTE, "warmup": args.warmup, "domains": args.domains}
    with private_host() as host:
        env = kvmhub_env(host)
        try:
            define_domains(host, args.domains, domain_type(accel))  # type: ignore[arg-type]
            log(f"scenario: {args.domains} defined, none running")
            measure(host, env, samples, "", args.runs, args.warmup)
            started, why = start_domains(host, min(args.running, args.domains), args.start_budget)
            notes["running"] = started
            notes["running_limited_by"] = why
            if started:
                time.sleep(5.0)  # let the last guests' firmware settle
                log(f"scenario: {args.domains} defined, {started} running")
                measure(host, env, samples, "-running", args.runs, args.warmup)
        finally:
            log("removing the domains")
            remove_domains(host)
    samples.order = list(samples.values)
    notes["compare"] = (
        f"kvmhub = `kvmhub top --once --json --interval 0` (whole process) vs a bare libvirt-python process "
        f"making the same getAllDomainStats call; -inproc = one refresh vs one call in this process; "
        f"scrape = one HTTP GET of /metrics from `kvmhub metrics`; {args.domains} domains, '-running' with "
        f"{notes.get('running', 0)} of them running"
    )
    for suffix in ("", "-running"):
        if f"kvmhub{suffix}" in samples.values:
            own = samples.median(f"kvmhub{suffix}") - samples.median(f"kvmhub-startup{suffix}")
            bare = samples.median(f"getAllDomainStats{suffix}") - samples.median(f"getAllDomainStats-startup{suffix}")
            notes[f"kvmhub{suffix}/getAllDomainStats{suffix} without start-up"] = round(own / bare, 3)
    notes["scrape_target_ms"] = SCRAPE_TARGET_MS
    notes["scrape_target_met"] = all(
        samples.median(k) * 1000 <= SCRAPE_TARGET_MS for k in samples.values if k.startswith("scrape")
    )
    report(
        benchmark="stats",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=["getAllDomainStats"],
        as_json=args.json,
        unit="ms",
        targets={"kvmhub/getAllDomainStats": 1.2},
        notes=notes,
        extra_ratios=[
            ("kvmhub-inproc", "getAllDomainStats-inproc"),
            ("kvmhub-running", "getAllDomainStats-running"),
            ("kvmhub-inproc-running", "getAllDomainStats-inproc-running"),
        ],
    )
    return 0


if __name__ == "__main__":
    os.environ.pop("KVMHUB_URI", None)  # the private host is set per command; never the machine's libvirt
    script(main)
