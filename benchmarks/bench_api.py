"""The server with 500 defined VMs: `GET /api/v1/vms` against a floor, `kvmhub ls` through it, start and kill.

A private test host gets 500 defined, never started domains shaped like kvmhub's (kvmhub metadata, a volume
disk, a seed ISO, a NIC, a serial log), defined through libvirt-python directly, and one small domain that
can boot (no disk). ``kvmhub serve --socket`` runs on it. Measured in one run, interleaved:

- ``GET /api/v1/vms`` over the unix socket at concurrency 8 (keep-alive connections, a fixed number of
  requests per round), against the floor: a minimal FastAPI app under the same uvicorn on the same kind of
  socket answering the same JSON bytes from memory. Time per request (wall time / requests), median and
  p99 latency; the server's RSS after each round. Each round follows one untimed GET: the rounds measure
  serving under load, not the one listing the server reads from libvirt after the start and kill of the
  previous round changed the host (~15-20 ms with 500 VMs; ``first-after-change`` reports it).
- ``kvmhub ls`` through the server (``KVMHUB_REMOTE=unix:SOCK``, the whole process) vs ``virsh list --all``.
- start and kill of the bootable domain through the API (the request until its operation has finished)
  vs ``virsh start`` and ``virsh destroy`` (whole processes). These rows run PROC_REPEATS times per round,
  the order of kvmhub and virsh alternating, and their medians are compared.

Run from the repo root: ``.venv/bin/python benchmarks/bench_api.py [--runs N] [--json] [--domains N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Response

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
    require_tools,
    script,
)
from kvmhub.testing import TestHost

DOMAINS = 500
REQUESTS = 400
CONCURRENCY = 8
PATH = "/api/v1/vms"
RUNNER = "ba-run"
PROC_REPEATS = 5  # whole processes and start/kill pairs per round
TARGETS = {
    "kvmhub-api/floor": 2.0,
    "kvmhub-api-median/floor-median": 2.0,
    "kvmhub-api-p99/floor-p99": 2.0,
    "kvmhub-ls/virsh-list": 0.5,
    "kvmhub-start/virsh-start": 1.0,
    "kvmhub-kill/virsh-destroy": 1.0,
}
RSS_TARGET_MIB = 100.0


def domain_xml(i: int) -> str:
    """A defined VM the way kvmhub writes one (the pool, network and volumes need not exist to define it)."""
    name = f"ba{i:04d}"
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <metadata><kvmhub:vm xmlns:kvmhub="https://kvmhub.dev/xmlns/1"><kvmhub:image>tiny</kvmhub:image>
    <kvmhub:created>2026-01-01T00:00:00Z</kvmhub:created>
    <kvmhub:owned-volume>default/{name}.qcow2</kvmhub:owned-volume>
    <kvmhub:owned-volume>default/{name}-seed.iso</kvmhub:owned-volume></kvmhub:vm></metadata>
  <memory unit='MiB'>128</memory><currentMemory unit='MiB'>128</currentMemory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features><clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
      <source pool='default' volume='{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>
      <source pool='default' volume='{name}-seed.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <serial type='pty'><log file='/var/log/libvirt/qemu/{name}-serial.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""


RUNNER_XML = f"""<domain type='qemu'><name>{RUNNER}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os><on_poweroff>destroy</on_poweroff>
  <devices><serial type='pty'><target port='0'/></serial><graphics type='vnc' listen='127.0.0.1'/></devices>
</domain>"""


def define_domains(host: TestHost, count: int) -> None:
    start = time.perf_counter()
    conn = host.connect()
    try:
        for i in range(count):
            conn.defineXML(domain_xml(i))
        conn.defineXML(RUNNER_XML)
    finally:
        conn.close()
    log(f"defined {count + 1} domains in {time.perf_counter() - start:.1f} s")


def undefine_domains(host: TestHost) -> None:
    conn = host.connect()
    try:
        for dom in conn.listAllDomains(0):
            if str(dom.name()).startswith("ba"):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
    finally:
        conn.close()


# -- servers ----------------------------------------------------------------------------------------------


def serve_floor(sock: str, body_file: str) -> None:
    """The floor: the least a FastAPI app under uvicorn can do to answer the same bytes on a unix socket.

    Its route is synchronous like kvmhub's (both answer from uvicorn's thread pool).
    """
    body = Path(body_file).read_bytes()
    app = FastAPI()

    @app.get(PATH)
    def vms() -> Response:
        return Response(content=body, media_type="application/json")

    uvicorn.run(app, uds=sock, log_level="warning", access_log=False, lifespan="off")


@contextmanager
def process(argv: Sequence[str], sock: Path, env: dict[str, str], logfile: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, once it answers ``GET PATH`` on ``sock``; stopped (SIGTERM, then SIGKILL) after."""
    with logfile.open("wb") as err:
        proc = subprocess.Popen(list(argv), stdout=err, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://kvmhub", timeout=60) as c:
            while True:
                if proc.poll() is not None:
                    raise CommandFailed(f"{argv[0]} exited {proc.returncode}: {logfile.read_text()[-2000:]}")
                try:
                    if c.get(PATH).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise CommandFailed(f"{' '.join(argv)} did not answer within 120 s")
                time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise CommandFailed(f"no VmRSS for process {pid}")


# -- load -------------------------------------------------------------------------------------------------


async def _worker(sock: str, todo: list[int], latencies: list[float], size: int) -> None:
    reader, writer = await asyncio.open_unix_connection(sock)
    request = f"GET {PATH} HTTP/1.1\r\nhost: kvmhub\r\n\r\n".encode()
    try:
        while todo:
            todo.pop()
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != b"200" or len(body) != size:
                raise CommandFailed(f"GET {PATH} on {sock}: {status.decode()}, {len(body)} bytes (wanted {size})")
    finally:
        writer.close()


async def _burst(sock: str, requests: int, size: int) -> tuple[float, list[float]]:
    todo = list(range(requests))
    latencies: list[float] = []
    start = time.perf_counter()
    await asyncio.gather(*(_worker(sock, todo, latencies, size) for _ in range(CONCURRENCY)))
    return time.perf_counter() - start, latencies


def timed_get(client: httpx.Client) -> float:
    """One ``GET /vms`` (seconds)."""
    start = time.perf_counter()
    client.get(PATH).raise_for_status()
    return time.perf_counter() - start


def burst(sock: str, requests: int, size: int) -> tuple[float, float, float]:
    """``requests`` GETs over ``CONCURRENCY`` keep-alive connections: time per request, median and p99 latency."""
    wall, latencies = asyncio.run(_burst(sock, requests, size))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return wall / requests, statistics.median(latencies), p99


# -- whole processes and operations -----------------------------------------------------------------------


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, done.stdout


def api_action(client: httpx.Client, action: str) -> float:
    """POST /vms/RUNNER/ACTION until its operation has finished (succeeded), in seconds."""
    start = time.perf_counter()
    answer = client.post(f"/api/v1/vms/{RUNNER}/{action}")
    if answer.status_code != 202:
        raise CommandFailed(f"{action} {RUNNER}: {answer.status_code} {answer.text}")
    where = answer.headers["location"]
    op: dict[str, Any] = answer.json()
    while op["state"] == "running":
        op = client.get(f"{where}/wait", params={"timeout": 60}).json()
    elapsed = time.perf_counter() - start
    if op["state"] != "succeeded":
        raise CommandFailed(f"{action} {RUNNER}: {op}")
    return elapsed


def check_listings(host: TestHost, env: dict[str, str], domains: int) -> None:
    """``kvmhub ls`` through the server and ``virsh list --all`` list the same domains."""
    _, table = timed([KVMHUB, "ls"], env)
    _, vl = timed(["virsh", "-c", host.uri, "list", "--all"], env)
    counts = {"kvmhub ls": sum(1 for line in table.splitlines() if line.startswith("ba")),
              "virsh list --all": sum(1 for line in vl.splitlines() if " ba" in line)}
    log(f"rows listed: {counts}")
    if set(counts.values()) != {domains + 1}:
        raise CommandFailed(f"expected {domains + 1} domains from each lister, got {counts}")


# -- report -----------------------------------------------------------------------------------------------


def results_of(samples: Samples, unit: str) -> dict[str, dict[str, float]]:
    return samples.summary(unit) if unit in ("s", "ms") else {
        name: {f"median_{unit}": round(statistics.median(v), 1), f"min_{unit}": round(min(v), 1),
               f"max_{unit}": round(max(v), 1)} for name, v in samples.values.items()}


def ratio(samples: Samples, subject: str, anchor: str) -> float:
    return round(samples.median(subject) / samples.median(anchor), 3)


def print_table(doc: dict[str, Any], groups: Sequence[tuple[str, Samples]]) -> None:
    print(f"benchmark {doc['benchmark']}: {doc['runs']} runs, accelerator {doc['accelerator']}")
    for key in ("compare", "load", "stop", "bytecode"):
        print(f"  {key}: {doc[key]}")
    print()
    width = max(len(n) for n in doc["results"])
    for unit, group in groups:
        print(f"{'what':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}   ({unit})")
        for name, row in results_of(group, unit).items():
            print(f"{name:<{width}}  {row[f'median_{unit}']:>9}  {row[f'min_{unit}']:>9}  {row[f'max_{unit}']:>9}")
        print()
    kwidth = max(len(k) for k in doc["ratios"])
    for key, value in doc["ratios"].items():
        target = TARGETS.get(key)
        verdict = f"  (target <= {target:g}: {'met' if value <= target else 'MISSED'})" if target else ""
        print(f"{key:<{kwidth}} {value:6.2f}x{verdict}")
    rss, early = doc["server_rss_mib"], doc["server_rss_after_startup_mib"]
    print(f"{'server_rss_mib':<{kwidth}} {rss:6.1f}  (target <= {RSS_TARGET_MIB:g}: "
          f"{'met' if rss <= RSS_TARGET_MIB else 'MISSED'}; {early:.1f} after start-up and one GET)",
          flush=True)


# -- main -------------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_api",
        [
            (("--domains",), {"type": int, "default": DOMAINS, "help": f"defined domains (default {DOMAINS})"}),
            (("--requests",), {"type": int, "default": REQUESTS,
                               "help": f"GETs per round and server (default {REQUESTS})"}),
            (("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"}),
            (("--floor",), {"nargs": 2, "metavar": ("SOCK", "BODY"), "help": argparse.SUPPRESS}),
        ],
        smoke={"domains": 20, "requests": 16},
    )
    if args.floor:
        serve_floor(*args.floor)
        return 0
    require_tools("virsh")
    accel = accelerator_name()
    api = Samples(order=["kvmhub-api", "floor", "kvmhub-api-median", "floor-median", "kvmhub-api-p99", "floor-p99",
                         "first-after-change"])
    procs = Samples(order=["kvmhub-ls", "virsh-list", "kvmhub-start", "virsh-start", "kvmhub-kill", "virsh-destroy"])
    rss = Samples(order=["server-rss", "floor-rss"])
    with private_host() as host, tempfile.TemporaryDirectory(prefix="kh-ba-") as tmp:
        where = Path(tmp)  # short: a unix socket's path is limited to 107 bytes
        env = kvmhub_env(host)
        sock, floor_sock, body_file = where / "kvmhub.sock", where / "floor.sock", where / "vms.json"
        try:
            define_domains(host, args.domains)
            server_argv = [KVMHUB, "--connect", host.uri, "serve", "--socket", str(sock)]
            with process(server_argv, sock, env, where / "server.log") as server, \
                    httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://kvmhub",
                                 timeout=120) as client:
                idle_rss = rss_mib(server.pid)
                body = client.get(PATH).content
                body_file.write_bytes(body)
                log(f"GET {PATH}: {len(json.loads(body))} VMs, {len(body)} bytes")
                floor_argv = [PYTHON, __file__, "--floor", str(floor_sock), str(body_file)]
                with process(floor_argv, floor_sock, env, where / "floor.log") as floor:
                    remote_env = {**env, "KVMHUB_REMOTE": f"unix:{sock}"}
                    check_listings(host, remote_env, args.domains)
                    virsh = ["virsh", "-c", host.uri]
                    for i in range(args.warmup + args.runs):
                        warm = i < args.warmup
                        pair = [("kvmhub-api", str(sock)), ("floor", str(floor_sock))]
                        first = timed_get(client)  # the host changed in the last round: the server reads it now
                        if not warm:
                            api.add("first-after-change", first)
                        for name, where_ in pair if i % 2 == 0 else reversed(pair):
                            per_request, median, p99 = burst(where_, args.requests, len(body))
                            if not warm:
                                api.add(name, per_request)
                                api.add(f"{name}-median", median)
                                api.add(f"{name}-p99", p99)
                        if not warm:
                            rss.add("server-rss", rss_mib(server.pid))
                            rss.add("floor-rss", rss_mib(floor.pid))
                        row: dict[str, float] = {}
                        for rep in range(PROC_REPEATS):  # each a few times: a start's own spread is ~±25 %
                            kvmhub_first = (i + rep) % 2 == 0
                            steps: list[tuple[str, Callable[[], float]]] = [
                                ("kvmhub-ls", lambda: timed([KVMHUB, "ls"], remote_env)[0]),
                                ("virsh-list", lambda: timed([*virsh, "list", "--all"], env)[0]),
                                ("kvmhub-start", lambda: api_action(client, "start")),
                                ("kvmhub-kill", lambda: api_action(client, "kill")),
                                ("virsh-start", lambda: timed([*virsh, "start", RUNNER], env)[0]),
                                ("virsh-destroy", lambda: timed([*virsh, "destroy", RUNNER], env)[0]),
                            ]
                            order = steps if kvmhub_first else [steps[1], steps[0], *steps[4:], *steps[2:4]]
                            for name, step in order:
                                row[name] = step()
                                if not warm:
                                    procs.add(name, row[name])
                        shown = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row.items())
                        log(("warm-up: " if warm else f"run {i - args.warmup + 1}/{args.runs}: ") + shown)
                    server_rss = rss_mib(server.pid)
        finally:
            undefine_domains(host)
    ratios = {
        "kvmhub-api/floor": ratio(api, "kvmhub-api", "floor"),
        "kvmhub-api-median/floor-median": ratio(api, "kvmhub-api-median", "floor-median"),
        "kvmhub-api-p99/floor-p99": ratio(api, "kvmhub-api-p99", "floor-p99"),
        "kvmhub-ls/virsh-list": ratio(procs, "kvmhub-ls", "virsh-list"),
        "kvmhub-start/virsh-start": ratio(procs, "kvmhub-start", "virsh-start"),
        "kvmhub-kill/virsh-destroy": ratio(procs, "kvmhub-kill", "virsh-destroy"),
    }
    doc: dict[str, Any] = {
        "benchmark": "api",
        "runs": args.runs,
        "accelerator": accel,
        "results": {**results_of(api, "ms"), **results_of(procs, "ms"), **results_of(rss, "mib")},
        "ratios": ratios,
        "targets": {**TARGETS, "server_rss_mib": RSS_TARGET_MIB},
        "server_rss_mib": round(server_rss, 1),
        "server_rss_after_startup_mib": round(idle_rss, 1),
        "compare": f"{args.domains} defined (shut off) kvmhub-like domains plus one bootable one; server on its "
                   "unix socket; the floor is a FastAPI app under the same uvicorn answering the same bytes",
        "load": f"{args.requests} GETs per round and server at concurrency {CONCURRENCY} over keep-alive "
                "connections; kvmhub-api and floor are time per request (wall / requests), -median and -p99 "
                "are latencies; the two servers alternate which goes first",
        "stop": "kill (virsh destroy's equivalent): the runner has no guest OS to answer ACPI; kvmhub-start and "
                "kvmhub-kill run from the request to the operation's end, virsh as whole processes",
        "bytecode": BYTECODE_NOTE,
        "warmup": args.warmup,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        print_table(doc, [("ms", api), ("ms", procs), ("mib", rss)])
    return 0


if __name__ == "__main__":
    script(main)
