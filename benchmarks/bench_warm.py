"""Time to a ready guest from a warm template: `kvmhub create --template` vs a cold `kvmhub create --wait`.

Both make the same tiny appliance VM (256 MiB, 1 vCPU, a NIC on an isolated network) on a private test host and
end when `create --wait` exits with the VM at ``ready`` (the guest answered DHCP on its new address and pinged the
host from it; for the cold one, its seed was applied). The template is made once, untimed, from a VM booted to
ready (``kvmhub template create tpl --from VM``). Interleaved: cold, warm, cold, warm ...; each VM is removed
after its run. Then 10 warm creates in a row (3 with ``--smoke``), all kept running until the last is ready, so
the later ones run beside the earlier ones.

With ``--debian`` the same is timed on the Debian 12 image of ``kvmhub image build-debian`` (cloud-init, OpenSSH,
ifupdown; 1 GiB; built from Debian packages when not cached, which takes minutes): ``debian-cold`` and
``debian-warm``, ``--runs`` rounds.

Run from the repo root: ``.venv/bin/python benchmarks/bench_warm.py [--runs N] [--row N] [--debian] [--json]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from benchmarks._common import (
    BYTECODE_NOTE,
    CommandFailed,
    Samples,
    accelerator_name,
    kvmhub,
    log,
    parse_args,
    private_host,
    report,
    script,
)
from kvmhub.testing import TestHost

IMAGE = "tiny"
NETWORK = "wlab"
SUBNET = "10.78.0.0/24"
TEMPLATE = "tpl"
MEMORY = "256M"
TIMEOUT = "240"
TARGETS = {"kvmhub-warm/kvmhub-cold": 0.2}
DEBIAN = "debian12"
DEBIAN_TIMEOUT = "600"
COMPARE = (
    "whole `kvmhub create NAME ... --wait` processes until they exit with the VM ready: cold = --image tiny (boot, "
    "seed, DHCP), warm = --template (restore of the saved memory, NIC plugged, identity and DHCP through the "
    "agent); warm-in-a-row: consecutive warm creates, the earlier VMs left running"
)


def _timed(host: TestHost, *args: str) -> float:
    start = time.perf_counter()
    kvmhub(host, *args, timeout=float(TIMEOUT) + 60)
    return time.perf_counter() - start


def _quiet_rm(host: TestHost, *names: str) -> None:
    for name in names:
        try:
            kvmhub(host, "rm", name)
        except CommandFailed as exc:
            log(f"warning: rm {name}: {exc}")


def setup(host: TestHost) -> None:
    """Pools, the tiny image, an isolated network and the template (made from a VM booted to ready)."""
    from kvmhub.tools.tiny.build import build_tiny_image

    log("building (or reusing) the tiny appliance image")
    image = build_tiny_image()
    kvmhub(host, "host", "setup", "--no-network")
    kvmhub(host, "image", "import", str(image), "--name", IMAGE)
    kvmhub(host, "net", "create", NETWORK, "--mode", "isolated", "--subnet", SUBNET)
    log("booting the template's source VM")
    kvmhub(host, "create", "tsrc", "--image", IMAGE, "--network", NETWORK, "--memory", MEMORY, "--wait",
           "--timeout", TIMEOUT)
    took = _timed(host, "template", "create", TEMPLATE, "--from", "tsrc")
    log(f"template {TEMPLATE} made in {took:.2f} s")


def debian_rounds(host: TestHost, runs: int, samples: Samples) -> None:
    """Cold and warm creates of the Debian image, interleaved (the template made once from a ready guest)."""
    log("building (or reusing) the Debian image, booting the template's source")
    kvmhub(host, "image", "build-debian", "--name", DEBIAN, timeout=1800)
    kvmhub(host, "create", "dsrc", "--image", DEBIAN, "--network", NETWORK, "--memory", "1G", "--wait",
           "--timeout", DEBIAN_TIMEOUT, timeout=float(DEBIAN_TIMEOUT) + 60)
    kvmhub(host, "template", "create", "dtpl", "--from", "dsrc")
    try:
        for i in range(runs):
            try:
                cold = _timed(host, "create", f"dc{i}", "--image", DEBIAN, "--network", NETWORK, "--memory", "1G",
                              "--wait", "--timeout", DEBIAN_TIMEOUT)
            finally:
                _quiet_rm(host, f"dc{i}")
            try:
                warm = _timed(host, "create", f"dw{i}", "--template", "dtpl", "--network", NETWORK, "--wait",
                              "--timeout", TIMEOUT)
            finally:
                _quiet_rm(host, f"dw{i}")
            samples.add("debian-cold", cold)
            samples.add("debian-warm", warm)
            log(f"debian {i + 1}/{runs}: cold {cold:.2f} s, warm {warm:.2f} s")
    finally:
        _quiet_rm(host, "dsrc")
        kvmhub(host, "template", "rm", "dtpl")


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_warm",
        [(("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"}),
         (("--row",), {"type": int, "default": 10, "help": "warm creates in a row (default 10)"}),
         (("--debian",), {"action": "store_true", "help": "time the Debian 12 image too (see above)"})],
        smoke={"row": 3},
    )
    accel = accelerator_name()
    load_before = os.getloadavg()
    samples = Samples(order=["kvmhub-cold", "kvmhub-warm", "kvmhub-warm-in-a-row", "debian-cold", "debian-warm"])
    with private_host() as host:
        setup(host)
        for i in range(args.warmup + args.runs):
            timed = i >= args.warmup
            label = f"run {i - args.warmup + 1}/{args.runs}" if timed else f"warm-up {i + 1}/{args.warmup}"
            try:
                cold = _timed(host, "create", f"c{i}", "--image", IMAGE, "--network", NETWORK, "--memory", MEMORY,
                              "--wait", "--timeout", TIMEOUT)
            finally:
                _quiet_rm(host, f"c{i}")
            try:
                warm = _timed(host, "create", f"w{i}", "--template", TEMPLATE, "--network", NETWORK, "--wait",
                              "--timeout", TIMEOUT)
            finally:
                _quiet_rm(host, f"w{i}")
            if timed:
                samples.add("kvmhub-cold", cold)
                samples.add("kvmhub-warm", warm)
            log(f"{label}: cold {cold:.2f} s, warm {warm:.2f} s")
        made: list[str] = []
        try:
            for j in range(args.row):
                name = f"r{j}"
                made.append(name)
                took = _timed(host, "create", name, "--template", TEMPLATE, "--network", NETWORK, "--wait",
                              "--timeout", TIMEOUT)
                samples.add("kvmhub-warm-in-a-row", took)
                log(f"in a row {j + 1}/{args.row}: warm {took:.2f} s")
        finally:
            _quiet_rm(host, *made)
        _quiet_rm(host, "tsrc")
        kvmhub(host, "template", "rm", TEMPLATE)
        if args.debian:
            debian_rounds(host, args.runs, samples)
    ratios = [("kvmhub-warm", "kvmhub-cold"), ("kvmhub-warm-in-a-row", "kvmhub-cold")]
    report(
        benchmark="warm",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=[],
        as_json=args.json,
        targets=TARGETS,
        notes={
            "compare": COMPARE,
            "bytecode": BYTECODE_NOTE,
            "warmup": args.warmup,
            "in_a_row": args.row,
            "loadavg": [load_before, os.getloadavg()],
        },
        extra_ratios=ratios + ([("debian-warm", "debian-cold")] if args.debian else []),
    )
    return 0


if __name__ == "__main__":
    script(main)
