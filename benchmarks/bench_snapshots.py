"""Snapshots and backups: `kvmhub snapshot create|revert|rm` vs `virsh snapshot-*`, incremental vs full backups.

One tiny guest (256 MiB, no NIC) runs on a private test host. Each round, interleaved:

- snapshots: ``kvmhub snapshot create VM S`` and ``virsh snapshot-create-as VM S`` (both: an internal
  snapshot with the running guest's memory), then ``kvmhub snapshot revert`` / ``virsh snapshot-revert``,
  then ``kvmhub snapshot rm`` / ``virsh snapshot-delete``, once with kvmhub going first at each step and once
  with virsh first (QEMU removes the snapshot taken second faster); each step's time is the mean of the two.
  Each step is the whole CLI process, wall clock. ``kvmhub`` / ``virsh`` are the sums of the three steps;
  ``kvmhub-create`` etc. each step alone.
- backups: a full ``kvmhub backup VM --to DIR`` of the running guest, then 1 % of the disk's virtual size
  rewritten in the guest (random data, through the guest agent) and ``kvmhub backup --incremental``, then
  10 % and another incremental. Times are compared in ``ratios``; the sizes of the backup files are in
  ``backup_sizes_mib`` with their ratios to the full one.

Run from the repo root: ``.venv/bin/python benchmarks/bench_snapshots.py [--runs N] [--json]``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    require_tools,
    run,
    script,
)
from kvmhub.testing import TestHost
from tests.integration.guest import guest_run

VM = "bsnap"
MEMORY = "256M"
IMAGE_NAME = "tiny"
BACKUP_ROOT = "/var/lib/libvirt/bench-backups"
CHANGES = (("1pct", 0.01), ("10pct", 0.10))
OPS = ("create", "revert", "delete")
TARGETS = {"kvmhub/virsh": 1.1}
COMPARE = (
    "internal snapshots with memory of a running tiny guest (no NIC), each step the whole CLI process; "
    "kvmhub and virsh are create+revert+delete summed per round. backup-*: `kvmhub backup` of the running "
    "guest, full then incremental after rewriting 1 % / 10 % of the disk's virtual size in the guest"
)


@dataclass
class Bench:
    host: TestHost

    def virsh(self, *args: str) -> float:
        start = time.perf_counter()
        run(["virsh", "-q", "-c", self.host.uri, *args], timeout=600)
        return time.perf_counter() - start

    def kvmhub(self, *args: str) -> float:
        start = time.perf_counter()
        kvmhub(self.host, *args, timeout=600)
        return time.perf_counter() - start

    def in_guest(self, script: str, wait: float = 180) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                result = guest_run(self.host, VM, ["sh", "-c", script], timeout=300)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)  # the agent is not up yet
        if result.code != 0:
            raise CommandFailed(f"in the guest: {script!r} exited {result.code}: {result.err}")

    def snapshot_round(self, i: int) -> dict[str, float]:
        """create, revert, delete: kvmhub's and virsh's, each step interleaved, in both orders (each step's time
        is the mean of the two). The order matters to QEMU: the snapshot taken second is a child of the first,
        and removing it (the current leaf) takes 10-25 ms where removing the first one after takes ~40 ms."""
        took: dict[str, float] = {}
        for first, second in (("kvmhub", "virsh"), ("virsh", "kvmhub")):
            for name, seconds in self._ordered(i, first, second).items():
                took[name] = took.get(name, 0.0) + seconds / 2
        took["kvmhub"] = sum(took[f"kvmhub-{op}"] for op in OPS)
        took["virsh"] = sum(took[f"virsh-{op}"] for op in OPS)
        return took

    def _ordered(self, i: int, first: str, second: str) -> dict[str, float]:
        steps: dict[str, dict[str, tuple[str, ...]]] = {
            "kvmhub": {"create": ("snapshot", "create"), "revert": ("snapshot", "revert"),
                       "delete": ("snapshot", "rm")},
            "virsh": {"create": ("snapshot-create-as",), "revert": ("snapshot-revert",),
                      "delete": ("snapshot-delete",)},
        }
        names = {first: f"{first[0]}{i}a", second: f"{second[0]}{i}b"}

        def step(tool: str, op: str) -> float:
            timer = self.kvmhub if tool == "kvmhub" else self.virsh
            return timer(*steps[tool][op], VM, names[tool])

        took = {f"{t}-create": step(t, "create") for t in (first, second)}
        took |= {f"{t}-revert": step(t, "revert") for t in (first, second)}
        # the snapshot taken second hangs under the first: remove the leaf first
        took |= {f"{t}-delete": step(t, "delete") for t in (second, first)}
        return took

    def agent_back(self) -> None:
        """A guest agent that answers (untimed). After a revert to a snapshot with memory the agent can stay
        "not connected" for libvirt; a fresh boot of the guest brings it back."""
        try:
            self.in_guest("true", wait=30)
        except Exception as exc:
            log(f"the guest agent does not answer after the reverts ({exc}); restarting {VM}")
            kvmhub(self.host, "kill", VM)
            kvmhub(self.host, "start", VM, "--wait", "--timeout", "300", timeout=330)
            self.in_guest("true")

    def backup_round(self, i: int, disk_bytes: int) -> tuple[dict[str, float], dict[str, int]]:
        """Full backup, then one incremental per change size; returns (seconds, bytes) per backup."""
        directory = f"{BACKUP_ROOT}/round{i}"
        self.agent_back()
        times = {"backup-full": self.kvmhub("backup", VM, "--to", directory)}
        for label, share in CHANGES:
            blocks = max(1, int(disk_bytes * share) // 65536)
            self.in_guest(f"dd if=/dev/urandom of=/mnt/disk/bench-{label} bs=65536 count={blocks} 2>/dev/null"
                          " && sync")
            times[f"backup-incr-{label}"] = self.kvmhub("backup", VM, "--to", directory, "--incremental")
        points = json.loads(kvmhub(self.host, "backup", "ls", VM, "--dir", directory, "--json"))
        sizes = {"backup-full": points[0]["bytes"]}
        sizes.update({f"backup-incr-{label}": p["bytes"] for (label, _s), p in zip(CHANGES, points[1:], strict=True)})
        self.in_guest("rm -f /mnt/disk/bench-* && sync")
        self.forget_backups(directory)
        return times, sizes

    def forget_backups(self, directory: str) -> None:
        """Drop the round's checkpoints and files so every round starts alike."""
        for name in self.host.virsh("checkpoint-list", VM, "--name", "--topological").stdout.split()[::-1]:
            self.host.virsh("checkpoint-delete", VM, name)
        self.host.run(["rm", "-rf", directory])


def setup(host: TestHost) -> int:
    """Pools, the tiny image and the running guest; returns the guest disk's virtual size in bytes."""
    from kvmhub.tools.tiny.build import build_tiny_image

    log("building (or reusing) the tiny appliance image")
    image = build_tiny_image()
    kvmhub(host, "host", "setup", "--no-network")
    kvmhub(host, "image", "import", str(image), "--name", IMAGE_NAME)
    log(f"creating guest {VM}")
    kvmhub(host, "create", VM, "--image", IMAGE_NAME, "--memory", MEMORY, "--wait", "--timeout", "300")
    shown = json.loads(kvmhub(host, "show", VM, "--json"))
    disk = shown["disks"][0]["source"]
    info = host.virsh("vol-info", "--bytes", "--pool", disk["pool"], disk["volume"]).stdout
    return int(next(line.split()[1] for line in info.splitlines() if line.startswith("Capacity")))


def _sizes_note(sizes: list[dict[str, int]]) -> dict[str, object]:
    medians = {k: statistics.median(s[k] for s in sizes) for k in sizes[0]}
    return {
        "backup_sizes_mib": {k: round(v / 1024**2, 2) for k, v in medians.items()},
        "backup_size_ratios": {f"{k}/backup-full": round(v / medians["backup-full"], 4)
                               for k, v in medians.items() if k != "backup-full"},
    }


def main() -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "bench_snapshots")
    require_tools("virsh", "qemu-img")
    accel = accelerator_name()
    load_before = os.getloadavg()
    order = ["kvmhub", "virsh", *(f"{who}-{op}" for op in OPS for who in ("kvmhub", "virsh")),
             "backup-full", *(f"backup-incr-{label}" for label, _s in CHANGES)]
    samples = Samples(order=order)
    sizes: list[dict[str, int]] = []
    with private_host() as host:
        disk_bytes = setup(host)
        bench = Bench(host)

        def snapshots(i: int) -> None:
            for name, seconds in bench.snapshot_round(i).items():
                samples.add(name, seconds)

        def backups(i: int) -> None:
            times, got = bench.backup_round(i, disk_bytes)
            for name, seconds in times.items():
                samples.add(name, seconds)
            sizes.append(got)

        rounds: list[tuple[str, Callable[[int], None]]] = [("snapshots", snapshots), ("backups", backups)]
        try:
            for i in range(args.runs):
                for what, step in rounds:
                    step(i)
                    log(f"run {i + 1}/{args.runs}: {what} done")
        finally:
            kvmhub(host, "rm", VM)
    report(
        benchmark="snapshots",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=["virsh"],
        as_json=args.json,
        targets=TARGETS,
        notes={
            "compare": COMPARE,
            "bytecode": BYTECODE_NOTE,
            "disk_virtual_mib": round(disk_bytes / 1024**2, 1),
            "loadavg": [load_before, os.getloadavg()],
            **_sizes_note(sizes),
        },
        extra_ratios=[*((f"kvmhub-{op}", f"virsh-{op}") for op in OPS),
                      *((f"backup-incr-{label}", "backup-full") for label, _s in CHANGES)],
    )
    return 0


if __name__ == "__main__":
    script(main)
