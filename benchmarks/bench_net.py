"""Networking: time from VM start to a known IP (kvmhub vs virsh), and guest-to-guest TCP throughput.

Both parts run on a private test host with one isolated kvmhub network (``lab``, 10.89.0.0/24) and the
tiny appliance image (128 MiB, 1 vCPU; under TCG when there is no KVM).

1. **Start to IP**, interleaved and alternating who goes first (kvmhub, virsh, virsh, kvmhub, ...). Every run
   uses a fresh VM (``kvmhub create NAME --image tiny --network lab --memory 128M --no-start``, untimed, then
   ``kvmhub rm NAME``), so its MAC and DHCP lease are new and no lease from an earlier boot can answer.

   - kvmhub: the whole processes ``kvmhub start NAME`` then ``kvmhub ip NAME --wait``.
   - virsh: ``virsh start NAME``, then ``virsh domifaddr NAME --source lease`` every 100 ms until an address
     shows.

   For both, the moment the guest printed ``KVMHUB-NETWORK`` (its DHCP lease configured) on its serial log is
   recorded too (``<tool>-marker``, 20 ms log polling), to tell the guest's boot time from the tools' own;
   ``<tool>-after-marker`` is the tool's time minus its marker's (how long the tool took to learn the IP once
   the guest had it; the lease can precede the marker slightly, so it may be negative).
   Ratio ``kvmhub/virsh`` (target <= 1.05, reported only).

2. **TCP throughput**, interleaved (guest, loopback, ...): two more tiny VMs on ``lab``. Inside them, through
   the guest agent (guest-exec), busybox ``nc -l -p PORT > /dev/null`` on one and
   ``dd if=/dev/zero bs=64k count=N | nc IP PORT`` on the other. The same two commands (the test host's own
   busybox) run over 127.0.0.1 inside the test host's network namespace for ``loopback``. The sender times
   itself with shell builtins around the pipeline (the kernel's monotonic clock from /proc/timer_list, else
   /proc/uptime; ``sender_clock`` says which); its nc exits only once the receiver has read everything and
   closed, so the time covers delivery. Results in MiB/s; ratio ``guest/loopback``
   (higher is better; no target under TCG).

Run from the repo root: ``.venv/bin/python benchmarks/bench_net.py [--runs N] [--json] [--mib N]``.
"""

from __future__ import annotations

import base64
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from benchmarks._common import (
    BYTECODE_NOTE,
    KVMHUB,
    CommandFailed,
    GuestClock,
    Samples,
    accelerator_name,
    kvmhub,
    kvmhub_env,
    log,
    parse_args,
    private_host,
    require_tools,
    run,
    script,
)
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.testing import TestHost

IMAGE_NAME = "tiny"
NET = "lab"
SUBNET = "10.89.0.0/24"
MEMORY = "128M"
MARKER = "KVMHUB-NETWORK"
LEASE_POLL = 0.1  # virsh domifaddr polling, as the issue asks
LOG_POLL = 0.02
BOOT_TIMEOUT = 240.0
TRANSFER_TIMEOUT = 180.0
PORT_BASE = 5201
TARGETS = {"kvmhub/virsh": 1.05}
SENDER, RECEIVER = "bnsend", "bnrecv"

# Sender: times the pipeline with shell builtins only (no process start inside the timed span): the kernel's
# monotonic clock in ns from /proc/timer_list's "now at" line, else /proc/uptime (10 ms steps).
SEND_SCRIPT = (
    "ts() {{\n"
    "  t=; w1=; w2=; {{ read _; read _; read w1 w2 t _; }} 2>/dev/null </proc/timer_list\n"
    '  if [ "$w1 $w2" = "now at" ] && [ -n "$t" ]; then t="${{t}}e-9"; else read t _ </proc/uptime; fi\n'
    "}}\n"
    "ts; a=$t\n"
    "{bb}dd if=/dev/zero bs=64k count={count} 2>/dev/null | {bb}nc {ip} {port}\n"
    "rc=$?\n"
    "ts; b=$t\n"
    'echo "$a $b $rc"\n'
)
# Receiver: nc's stdin is a fifo this shell holds open, so nc never sees EOF on stdin (busybox nc would
# then shut its side down and the sender would stop early); it exits when the sender closes.
RECV_SCRIPT = (
    "f={dir}/bench-nc.{port}; rm -f $f; {bb}mkfifo $f || exit 1\n"
    "{bb}nc -l -p {port} <$f >/dev/null &\n"
    "exec 3>$f\n"
    "wait $!; rc=$?; rm -f $f; exit $rc\n"
)
# Until something listens on the port (IPv4 or IPv6 any-address), for at most 10 s.
LISTENING_SCRIPT = (
    "i=0\n"
    "while ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | {bb}grep -q ':{hexport} 0*:0000 0A'; do\n"
    "  i=$((i + 1)); [ $i -gt 200 ] && exit 1; {bb}usleep 50000\n"
    "done\n"
)


class _quiet:
    """Suppress cleanup failures (the thing may not exist), but never Ctrl-C."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        return exc_type is not None and issubclass(exc_type, Exception)


@dataclass
class Timing:
    total: float  # start command issued → the tool knows the IP
    marker: float | None  # start command issued → KVMHUB-NETWORK in the serial log


# -- part 1: start → IP ------------------------------------------------------------------------------------


class StartToIp:
    def __init__(self, host: TestHost) -> None:
        self.host = host
        self.env = kvmhub_env(host)

    def fresh_vm(self, name: str) -> Path:
        """Define a new VM on `lab` (not started); its serial log's path as seen from here."""
        from kvmhub.xml.domain import domain_from_xml

        kvmhub(self.host, "create", name, "--image", IMAGE_NAME, "--network", NET, "--memory", MEMORY, "--no-start")
        spec = domain_from_xml(self.host.virsh("dumpxml", name).stdout)
        if spec.serial is None or not spec.serial.log_file:
            raise CommandFailed(f"VM {name} has no serial log file")
        path = self.host.inside(spec.serial.log_file)
        path.unlink(missing_ok=True)
        return path

    def remove(self, name: str, serial: Path | None) -> None:
        with _quiet():
            kvmhub(self.host, "rm", name)
        if serial is not None:
            serial.unlink(missing_ok=True)

    def kvmhub(self, i: int) -> Timing:
        name = f"bnk{i}"
        serial: Path | None = None
        try:
            serial = self.fresh_vm(name)
            start = time.perf_counter()
            clock = GuestClock(serial, MARKER, start, LOG_POLL)
            try:
                run([KVMHUB, "start", name], env=self.env, timeout=BOOT_TIMEOUT)
                out = run(
                    [KVMHUB, "ip", name, "--wait", "--timeout", str(BOOT_TIMEOUT)],
                    env=self.env,
                    timeout=BOOT_TIMEOUT + 30,
                )
                total = time.perf_counter() - start
                if not out.strip():
                    raise CommandFailed(f"kvmhub ip {name} --wait printed no address")
                with _quiet():
                    clock.wait(2.0)  # the IP is known, so the marker is (nearly always) there already
            finally:
                clock.close()
            return Timing(total, clock.marked)
        finally:
            self.remove(name, serial)

    def virsh(self, i: int) -> Timing:
        name = f"bnv{i}"
        serial: Path | None = None
        try:
            serial = self.fresh_vm(name)
            start = time.perf_counter()
            clock = GuestClock(serial, MARKER, start, LOG_POLL)
            try:
                run(["virsh", "-q", "-c", self.host.uri, "start", name])
                deadline = time.monotonic() + BOOT_TIMEOUT
                while True:
                    out = run(["virsh", "-q", "-c", self.host.uri, "domifaddr", name, "--source", "lease"])
                    if "ipv4" in out or "ipv6" in out:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no lease for {name} within {BOOT_TIMEOUT:.0f} s")
                    time.sleep(LEASE_POLL)
                total = time.perf_counter() - start
                with _quiet():
                    clock.wait(2.0)
            finally:
                clock.close()
            return Timing(total, clock.marked)
        finally:
            self.remove(name, serial)


# -- part 2: throughput -------------------------------------------------------------------------------------


class Agent:
    """guest-exec through libvirt's qemuAgentCommand (as tests/integration/guest.py, plus a detached start)."""

    def __init__(self, host: TestHost) -> None:
        self.hv = Hypervisor(host.uri)

    def close(self) -> None:
        self.hv.close()

    def spawn(self, vm: str, script: str, *, capture: bool = True) -> int:
        dom = hv_domains.lookup(self.hv, vm)
        started = dom.agent_command(
            {
                "execute": "guest-exec",
                "arguments": {"path": "/bin/sh", "arg": ["-c", script], "capture-output": capture},
            },
            timeout=20,
        )
        return int(started["pid"])

    def wait(self, vm: str, pid: int, timeout: float, poll: float = 0.05) -> tuple[int, str, str]:
        dom = hv_domains.lookup(self.hv, vm)
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = dom.agent_command(
                {"execute": "guest-exec-status", "arguments": {"pid": pid}}, timeout=20
            )
            if status.get("exited"):
                return (
                    int(status.get("exitcode", -1)),
                    base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
                    base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest-exec {pid} in {vm} did not finish within {timeout:.0f} s")
            time.sleep(poll)

    def run(self, vm: str, script: str, timeout: float) -> tuple[int, str, str]:
        return self.wait(vm, self.spawn(vm, script), timeout)


TIMERS: dict[str, set[str]] = {"guest": set(), "loopback": set()}


def parse_send(out: str, who: str, what: str) -> float:
    """Seconds from the sender's output line `a b rc`; notes which clock the sender had in TIMERS."""
    parts = out.split()
    if len(parts) != 3 or parts[2] != "0":
        raise CommandFailed(f"{what}: sender failed: {out.strip()!r}")
    TIMERS[who].add("/proc/timer_list (ns)" if parts[0].endswith("e-9") else "/proc/uptime (10 ms)")
    return max(float(parts[1]) - float(parts[0]), 0.005)


class Throughput:
    def __init__(self, host: TestHost, agent: Agent, receiver_ip: str, count: int) -> None:
        self.host = host
        self.agent = agent
        self.receiver_ip = receiver_ip
        self.count = count  # 64 KiB blocks
        self.fifo_dir = f"/tmp/kvmhub-bench-net-{os.getpid()}"

    def guest(self, i: int) -> float:
        port = PORT_BASE + 2 * i
        recv = self.agent.spawn(RECEIVER, RECV_SCRIPT.format(bb="", dir="/tmp", port=port), capture=True)
        code, out, err = self.agent.run(RECEIVER, LISTENING_SCRIPT.format(bb="", hexport=f"{port:04X}"), 30)
        if code != 0:
            raise CommandFailed(f"guest receiver never listened on {port}: {out}{err}")
        code, out, err = self.agent.run(
            SENDER, SEND_SCRIPT.format(bb="", count=self.count, ip=self.receiver_ip, port=port), TRANSFER_TIMEOUT
        )
        seconds = parse_send(out, "guest", f"guest run {i} ({err.strip()})")
        rc, rout, rerr = self.agent.wait(RECEIVER, recv, 30)
        if rc != 0:
            raise CommandFailed(f"guest receiver exited {rc}: {rout}{rerr}")
        return seconds

    def loopback(self, i: int) -> float:
        port = PORT_BASE + 2 * i + 1
        self.host.run(["mkdir", "-p", self.fifo_dir])
        recv = self.host.popen(
            ["busybox", "sh", "-c", RECV_SCRIPT.format(bb="busybox ", dir=self.fifo_dir, port=port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            self.host.run(
                ["busybox", "sh", "-c", LISTENING_SCRIPT.format(bb="busybox ", hexport=f"{port:04X}")], timeout=30
            )
            done = self.host.run(
                ["busybox", "sh", "-c", SEND_SCRIPT.format(bb="busybox ", count=self.count, ip="127.0.0.1", port=port)],
                check=False, timeout=TRANSFER_TIMEOUT,
            )  # fmt: skip
            seconds = parse_send(done.stdout, "loopback", f"loopback run {i} ({done.stderr.strip()})")
            recv.wait(30)
            return seconds
        finally:
            if recv.poll() is None:
                with _quiet():
                    os.killpg(recv.pid, signal.SIGKILL)
                recv.wait(10)

    def close(self) -> None:
        with _quiet():
            self.host.run(["rm", "-rf", self.fifo_dir])


# -- setup, report --------------------------------------------------------------------------------------------


def setup(host: TestHost) -> None:
    from kvmhub.tools.tiny.build import build_tiny_image

    log("building (or reusing) the tiny appliance image")
    image = build_tiny_image()
    log("kvmhub host setup --no-network")
    kvmhub(host, "host", "setup", "--no-network")
    log(f"kvmhub image import {image} --name {IMAGE_NAME}")
    kvmhub(host, "image", "import", str(image), "--name", IMAGE_NAME)
    log(f"kvmhub net create {NET} --mode isolated --subnet {SUBNET}")
    kvmhub(host, "net", "create", NET, "--mode", "isolated", "--subnet", SUBNET)


def check_clean(host: TestHost) -> None:
    domains = host.virsh("list", "--all", "--name").stdout.split()
    if domains:
        log(f"warning: left behind: domains {domains}")
    else:
        log("clean: no domain left on the test host")


def rate_summary(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        name: {
            "median_mibps": round(statistics.median(vals), 1),
            "min_mibps": round(min(vals), 1),
            "max_mibps": round(max(vals), 1),
        }
        for name, vals in values.items()
        if vals
    }


def print_table(
    title: str, results: dict[str, dict[str, float]], each: dict[str, list[float]], unit: str, digits: int
) -> None:
    if not results:
        return
    width = max(len(n) for n in results)
    print(f"{title}")
    print(f"  {'what':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}   runs ({unit})")
    for name, row in results.items():
        med, lo, hi = row.values()
        runs = " ".join(f"{v:.{digits}f}" for v in each.get(name, []))
        print(f"  {name:<{width}}  {med:>9.{digits}f}  {lo:>9.{digits}f}  {hi:>9.{digits}f}   {runs}")
    print()


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_net",
        [
            (("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"}),
            (("--mib",), {"type": int, "default": 32, "help": "MiB per throughput transfer (default 32)"}),
            (("--skip-ip",), {"action": "store_true", "help": "skip part 1 (start to IP)"}),
            (("--skip-tcp",), {"action": "store_true", "help": "skip part 2 (TCP throughput)"}),
        ],
        smoke={"mib": 1},
    )
    require_tools("virsh", "busybox")
    accel = accelerator_name()
    load_before = os.getloadavg()
    count = max(1, args.mib * 16)  # 64 KiB blocks
    mib = count / 16
    samples = Samples(
        order=["kvmhub", "virsh", "kvmhub-marker", "virsh-marker", "kvmhub-after-marker", "virsh-after-marker"]
    )
    rates: dict[str, list[float]] = {"guest": [], "loopback": []}
    with private_host() as host:
        setup(host)
        if not args.skip_ip:
            bench = StartToIp(host)
            steps: dict[str, Callable[[int], Timing]] = {"kvmhub": bench.kvmhub, "virsh": bench.virsh}
            for i in range(args.warmup + args.runs):
                timed = i >= args.warmup
                label = f"start→IP run {i - args.warmup + 1}/{args.runs}" if timed else f"start→IP warm-up {i + 1}"
                for who in ("kvmhub", "virsh") if i % 2 == 0 else ("virsh", "kvmhub"):
                    t = steps[who](i)
                    if timed:
                        samples.add(who, t.total)
                        if t.marker is not None:
                            samples.add(f"{who}-marker", t.marker)
                            samples.add(f"{who}-after-marker", t.total - t.marker)
                    mark = f"{t.marker:.2f}" if t.marker is not None else "?"
                    log(f"{label}: {who} {t.total:.2f} s (guest's {MARKER} at {mark} s)")
            check_clean(host)
        if not args.skip_tcp:
            made: list[str] = []
            agent = Agent(host)
            tput: Throughput | None = None
            try:
                for vm in (RECEIVER, SENDER):
                    log(f"kvmhub create {vm} --image {IMAGE_NAME} --network {NET} --memory {MEMORY}")
                    made.append(vm)
                    kvmhub(host, "create", vm, "--image", IMAGE_NAME, "--network", NET, "--memory", MEMORY)
                ips = {}
                for vm in made:
                    out = kvmhub(host, "ip", vm, "--wait", "--timeout", str(BOOT_TIMEOUT), timeout=BOOT_TIMEOUT + 30)
                    ips[vm] = out.split()[0]
                log(f"receiver {RECEIVER} at {ips[RECEIVER]}, sender {SENDER} at {ips[SENDER]}")
                # the agent may come up a moment after the network
                deadline = time.monotonic() + BOOT_TIMEOUT
                for vm in made:
                    while True:
                        try:
                            if agent.run(vm, "true", 20)[0] == 0:
                                break
                        except Exception as exc:  # not answering yet
                            if time.monotonic() > deadline:
                                raise CommandFailed(f"the guest agent of {vm} never answered: {exc}") from exc
                        time.sleep(1)
                tput = Throughput(host, agent, ips[RECEIVER], count)
                tsteps: dict[str, Callable[[int], float]] = {"guest": tput.guest, "loopback": tput.loopback}
                for i in range(args.warmup + args.runs):
                    timed = i >= args.warmup
                    label = f"TCP run {i - args.warmup + 1}/{args.runs}" if timed else f"TCP warm-up {i + 1}"
                    for who in ("guest", "loopback") if i % 2 == 0 else ("loopback", "guest"):
                        seconds = tsteps[who](i)
                        rate = mib / seconds
                        if timed:
                            rates[who].append(rate)
                        log(f"{label}: {who} {mib:g} MiB in {seconds:.2f} s = {rate:.1f} MiB/s")
            finally:
                if tput is not None:
                    tput.close()
                agent.close()
                for vm in made:
                    with _quiet():
                        kvmhub(host, "rm", vm)
                with _quiet():
                    kvmhub(host, "net", "rm", NET, "--force")
            check_clean(host)
    results: dict[str, dict[str, float]] = samples.summary("s")
    rate_results = rate_summary(rates)
    results.update(rate_results)
    ratios = samples.ratios(["virsh"])
    ratios.update(samples.ratios(["virsh-marker"], subject="kvmhub-marker"))
    if rates["guest"] and rates["loopback"]:
        ratios["guest/loopback"] = round(statistics.median(rates["guest"]) / statistics.median(rates["loopback"]), 3)
    notes: dict[str, Any] = {
        "compare": (
            "start→IP on a fresh VM per run (tiny image, 128 MiB, isolated network, static DHCP reservation): "
            "kvmhub = `kvmhub start` + `kvmhub ip --wait` (whole processes); virsh = `virsh start` + "
            "`virsh domifaddr --source lease` every 100 ms; -marker = when the guest printed KVMHUB-NETWORK, "
            "-after-marker = the tool's time minus the marker's (its own latency once the guest has its IP). "
            f"guest/loopback = busybox dd|nc of {mib:g} MiB guest→guest over the virtual network vs the same "
            "on 127.0.0.1 in the test host, MiB/s (higher is better)"
        ),
        "bytecode": BYTECODE_NOTE,
        "warmup": args.warmup,
        "transfer_mib": mib,
        "sender_clock": {k: sorted(v) for k, v in TIMERS.items() if v},
        "loadavg": [load_before, os.getloadavg()],
    }
    if args.json:
        import json

        doc: dict[str, Any] = {
            "benchmark": "net",
            "runs": args.runs,
            "accelerator": accel,
            "results": results,
            "ratios": ratios,
            "targets": TARGETS,
            **notes,
        }
        print(json.dumps(doc))
        return 0
    print(f"benchmark net: {args.runs} runs, accelerator {accel}")
    print(f"  compare: {notes['compare']}")
    print()
    print_table("start to IP", samples.summary("s"), samples.values, "s", 3)
    print_table("TCP throughput", rate_results, rates, "MiB/s", 1)
    for key, value in ratios.items():
        target = TARGETS.get(key)
        verdict = f"  (target <= {target:g}: {'met' if value <= target else 'MISSED'})" if target else ""
        print(f"{key:<28} {value:6.3f}x{verdict}")
    return 0


if __name__ == "__main__":
    os.environ.pop("KVMHUB_URI", None)  # the private host is set per command; never the machine's libvirt
    script(main)
