"""Time to a booted guest: `kvmhub create --wait` vs virsh, virt-install and raw qemu-system.

All four boot the same tiny appliance image (kvmhub's store copy), each through its own qcow2 linked clone,
with 256 MiB, 1 vCPU, a virtio disk and **no NIC**, on a private test host, interleaved
(kvmhub, virsh, virt-install, qemu, kvmhub, ...). "Booted" is the appliance's ``KVMHUB-BOOTED`` line on
ttyS0:

- kvmhub: the whole ``kvmhub create NAME --image tiny --memory 256M --wait=booted`` process (clone, seed ISO,
  define, start, wait until booted: a seeded VM's bare ``--wait`` goes on to ready, which the others do not
  wait for). The moment the marker reached the serial
  log is recorded too (``kvmhub-marker``), to separate boot time from kvmhub's own overhead.
- virsh: ``qemu-img create`` (linked clone) + ``virsh create`` of equivalent XML, then the serial log is polled.
- virt-install: ``qemu-img create`` + ``virt-install --import ... --noautoconsole``, then the serial log.
- qemu: ``qemu-img create`` + ``qemu-system-x86_64 -accel tcg|kvm ... -serial file:LOG``, then the log.

The benchmark polls logs every 20 ms; everything is removed after each run.

Run from the repo root: ``.venv/bin/python benchmarks/bench_create.py [--runs N] [--json]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    report,
    require_tools,
    run,
    script,
)
from kvmhub.testing import TestHost

MARKER = "KVMHUB-BOOTED"
MEMORY_MIB = 256
POLL = 0.02
BOOT_TIMEOUT = 180.0
IMAGE_NAME = "tiny"
IMAGES_DIR = "/var/lib/libvirt/images"  # the private daemon's default pool
LOG_DIR = "/var/log/libvirt/qemu"
CONTENDERS = ("kvmhub", "virsh", "virt-install", "qemu")
TARGETS = {"kvmhub/virsh": 1.0, "kvmhub/virt-install": 0.75}
COMPARE = (
    "no NIC on any guest; time from the first command until KVMHUB-BOOTED on ttyS0 "
    "(kvmhub: until `create --wait` exits; others: clone + start, marker seen by 20 ms log polling). "
    "kvmhub-marker: when the marker reached kvmhub's guest log; <tool>-start: when the serial log file "
    "appeared (emulator being launched)"
)


@dataclass
class Bench:
    host: TestHost
    image: str  # the base image, as the private daemon sees it
    accel: str

    # -- helpers ----------------------------------------------------------------------------------------

    def clone(self, name: str) -> str:
        """A qcow2 linked clone of the image, made inside the host; its path as the daemon sees it."""
        path = f"{IMAGES_DIR}/{name}.qcow2"
        self.host.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.image, "-F", "qcow2", path])
        return path

    def serial_log(self, name: str) -> str:
        return f"{LOG_DIR}/{name}-serial.log"

    def remove_files(self, name: str) -> None:
        for path in (f"{IMAGES_DIR}/{name}.qcow2", self.serial_log(name)):
            self.host.inside(path).unlink(missing_ok=True)

    def domain_xml(self, name: str, disk: str) -> str:
        return f"""<domain type='{"kvm" if self.accel == "kvm" else "qemu"}'>
  <name>{name}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='pty'><log file='{self.serial_log(name)}' append='off'/></serial>
    <console type='pty'/>
  </devices>
</domain>
"""

    def check_clean(self) -> None:
        """Warn (stderr) about any domain or file a run left behind."""
        domains = self.host.virsh("list", "--all", "--name").stdout.split()
        files = sorted(p.name for p in self.host.inside(IMAGES_DIR).iterdir())
        logs = sorted(p.name for p in self.host.inside(LOG_DIR).glob("*-serial.log"))
        if domains or files or logs:
            log(f"warning: left behind: domains {domains}, disks {files}, serial logs {logs}")
        else:
            log("clean: no domain, disk or serial log left on the test host")

    # -- contenders: each times one create and cleans up after itself ---------------------------------

    def clock(self, name: str, start: float) -> GuestClock:
        return GuestClock(self.host.inside(self.serial_log(name)), MARKER, start, POLL)

    def kvmhub(self, i: int) -> Timing:
        name = f"bk{i}"
        argv = [KVMHUB, "create", name, "--image", IMAGE_NAME, "--memory", f"{MEMORY_MIB}M", "--wait=booted"]
        try:
            start = time.perf_counter()
            clock = self.clock(name, start)
            try:
                done = subprocess.run(
                    argv,
                    env=kvmhub_env(self.host),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    timeout=BOOT_TIMEOUT,
                    check=False,
                )
                total = time.perf_counter() - start
                if done.returncode != 0:
                    raise CommandFailed(f"kvmhub create {name} exited {done.returncode}: {done.stderr.strip()}")
                clock.wait(1.0)  # --wait returned, so the marker is there; let the poller see it
            finally:
                clock.close()
            return Timing(total, clock.appeared, clock.marked)
        finally:
            with _quiet():
                kvmhub(self.host, "rm", name)

    def virsh(self, i: int) -> Timing:
        name = f"bv{i}"
        with tempfile.NamedTemporaryFile("w", suffix=".xml", prefix="bench-") as xml:
            xml.write(self.domain_xml(name, f"{IMAGES_DIR}/{name}.qcow2"))
            xml.flush()
            try:
                start = time.perf_counter()
                clock = self.clock(name, start)
                try:
                    self.clone(name)
                    run(["virsh", "-q", "-c", self.host.uri, "create", xml.name])
                    booted = clock.wait(BOOT_TIMEOUT)
                finally:
                    clock.close()
                return Timing(booted, clock.appeared, booted)
            finally:
                with _quiet():
                    self.host.virsh("destroy", name)
                self.remove_files(name)

    def virt_install(self, i: int) -> Timing:
        name = f"bi{i}"
        disk = f"{IMAGES_DIR}/{name}.qcow2"
        argv = [
            "virt-install", "--connect", self.host.uri, "--import", "--name", name,
            "--memory", str(MEMORY_MIB), "--vcpus", "1",
            "--disk", f"path={disk},format=qcow2,bus=virtio",
            "--os-variant", "generic", "--virt-type", "kvm" if self.accel == "kvm" else "qemu",
            "--network", "none", "--graphics", "none", "--noautoconsole",
            "--serial", f"pty,log.file={self.serial_log(name)}",
        ]  # fmt: skip
        try:
            start = time.perf_counter()
            clock = self.clock(name, start)
            try:
                self.clone(name)
                run(argv)
                booted = clock.wait(BOOT_TIMEOUT)
            finally:
                clock.close()
            return Timing(booted, clock.appeared, booted)
        finally:
            with _quiet():
                self.host.virsh("destroy", name)
            with _quiet():
                self.host.virsh("undefine", name)
            self.remove_files(name)

    def qemu(self, i: int) -> Timing:
        name = f"bq{i}"
        argv = [
            "qemu-system-x86_64", "-accel", self.accel, "-m", str(MEMORY_MIB), "-nodefaults",
            "-display", "none", "-serial", f"file:{self.serial_log(name)}",
            "-drive", f"file={IMAGES_DIR}/{name}.qcow2,if=virtio,format=qcow2",
        ]  # fmt: skip
        proc: subprocess.Popen[bytes] | None = None
        try:
            start = time.perf_counter()
            clock = self.clock(name, start)
            try:
                self.clone(name)
                proc = self.host.popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                running = proc
                booted = clock.wait(BOOT_TIMEOUT, alive=lambda: running.poll() is None)
            finally:
                clock.close()
            return Timing(booted, clock.appeared, booted)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait(30)
            self.remove_files(name)


@dataclass
class Timing:
    total: float  # what is compared: until `kvmhub create --wait` exits / until the marker
    started: float | None  # until the serial log existed (the emulator was being launched)
    booted: float | None  # until KVMHUB-BOOTED was in the serial log


class _quiet:
    """Suppress cleanup failures (the thing may not exist), but never Ctrl-C."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        return exc_type is not None and issubclass(exc_type, Exception)


def setup(host: TestHost) -> str:
    """Pools and the tiny image on the test host; returns the image's path as the daemon sees it."""
    from kvmhub.tools.tiny.build import build_tiny_image

    log("building (or reusing) the tiny appliance image")
    image = build_tiny_image()
    log("kvmhub host setup --no-network")
    kvmhub(host, "host", "setup", "--no-network")
    log(f"kvmhub image import {image} --name {IMAGE_NAME}")
    kvmhub(host, "image", "import", str(image), "--name", IMAGE_NAME)
    # the image's own volume, as `image show` names it
    path = json.loads(kvmhub(host, "image", "show", IMAGE_NAME, "--json"))["path"]
    if not isinstance(path, str) or not path.endswith(".qcow2"):
        raise CommandFailed(f"kvmhub image show {IMAGE_NAME} gave no qcow2 path: {path!r}")
    return path


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_create",
        [(("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"})],
    )
    require_tools("virsh", "virt-install", "qemu-img", "qemu-system-x86_64")
    accel = accelerator_name()
    load_before = os.getloadavg()
    order = [*CONTENDERS, "kvmhub-marker", *(f"{c}-start" for c in CONTENDERS)]
    samples = Samples(order=order)
    with private_host() as host:
        bench = Bench(host, setup(host), accel)
        steps: dict[str, Callable[[int], Timing]] = {
            "kvmhub": bench.kvmhub,
            "virsh": bench.virsh,
            "virt-install": bench.virt_install,
            "qemu": bench.qemu,
        }
        for i in range(args.warmup + args.runs):
            timed = i >= args.warmup
            label = f"run {i - args.warmup + 1}/{args.runs}" if timed else f"warm-up {i + 1}/{args.warmup}"
            for who in CONTENDERS:
                t = steps[who](i)
                if timed:
                    samples.add(who, t.total)
                    if t.started is not None:
                        samples.add(f"{who}-start", t.started)
                    if who == "kvmhub" and t.booted is not None:
                        samples.add("kvmhub-marker", t.booted)
                started = f"{t.started:.2f}" if t.started is not None else "?"
                booted = f"{t.booted:.2f}" if t.booted is not None else "?"
                log(f"{label}: {who} {t.total:.2f} s (serial log opened at {started} s, marker at {booted} s)")
        bench.check_clean()
    report(
        benchmark="create",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=["virsh", "virt-install", "qemu"],
        as_json=args.json,
        targets=TARGETS,
        notes={
            "compare": COMPARE,
            "bytecode": BYTECODE_NOTE,
            "warmup": args.warmup,
            "loadavg": [load_before, os.getloadavg()],
        },
        extra_ratios=[("kvmhub-start", f"{c}-start") for c in CONTENDERS[1:]],
    )
    return 0


if __name__ == "__main__":
    script(main)
