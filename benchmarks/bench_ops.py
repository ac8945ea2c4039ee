"""Cost of the operations journal and locks: library creates vs bare libvirt-python, and parallel vs serial.

Two measurements on a private test host, with the tiny image imported:

- ``kvmhub`` vs ``libvirt``: N VMs (default 100) made with ``--no-start`` semantics through the library
  (``kvmhub.services.vm.create.create`` with a ``CreateRequest``, in this process, one open connection), and
  the same libvirt work done bare with libvirt-python (a qcow2 overlay of the image, a seed volume created and
  uploaded, the same domain XML defined), interleaved one create each (kvmhub, libvirt, kvmhub, ...). Both
  build the NoCloud seed with the same ISO builder, so the difference is kvmhub's checks, journal and locks.
- ``parallel`` vs ``serial``: the same P creates (default 20, on network ``lab``, so each takes the network's
  lock to reserve its address) sent to P warm worker processes at once, vs one after another in one worker.
  ``parallel/serial`` below 1 is the throughput gained. ``parallel-nonet``/``serial-nonet``: the same without a
  NIC (no network lock, no network update).

Everything made is removed after each round; the journal lives in a temporary state directory.

Run from the repo root: ``.venv/bin/python benchmarks/bench_ops.py [--runs N] [--json] [--smoke]``;
``--profile`` prints where a library create spends its time (cProfile, on stderr).
"""

from __future__ import annotations

import copy
import cProfile
import io
import multiprocessing
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from lxml import etree

from benchmarks._common import (
    BYTECODE_NOTE,
    CommandFailed,
    Samples,
    accelerator_name,
    kvmhub_env,
    log,
    parse_args,
    private_host,
    report,
    run,
    script,
)
from kvmhub.testing import TestHost

IMAGE = "tiny"
NETWORK = "lab"
SUBNET = "10.78.0.0/24"
TARGETS = {"kvmhub/libvirt": 1.3, "parallel/serial": 0.67}
KVMHUB_CLI = [sys.executable, "-m", "kvmhub.cli.main"]
COMPARE = (
    "kvmhub: vm_create.create(CreateRequest(name=NAME, image='tiny', start=False)) in-process; libvirt: the same "
    "overlay volume, seed volume (same ISO builder) and domain XML with libvirt-python; times are for the "
    "whole batch of creates. parallel/serial: the same creates (with --network lab) in P warm worker "
    "processes at once vs one worker one after another; -nonet: the same creates without a NIC"
)


# -- bare libvirt-python --------------------------------------------------------------------------------


@dataclass
class Bare:
    """The libvirt work of one create, without kvmhub: what a script using libvirt-python would do."""

    conn: Any  # libvirt.virConnect
    pool: str
    image_path: str
    image_capacity: int
    template: etree._Element  # a kvmhub-made domain's inactive XML, metadata and UUID removed

    def volume_xml(self, name: str, capacity: int, fmt: str, backing: str | None) -> str:
        root = etree.Element("volume")
        etree.SubElement(root, "name").text = name
        etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
        etree.SubElement(root, "allocation", unit="bytes").text = "0"
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "format", type=fmt)
        if fmt == "qcow2":
            etree.SubElement(target, "compat").text = "1.1"
        if backing is not None:
            store = etree.SubElement(root, "backingStore")
            etree.SubElement(store, "path").text = backing
            etree.SubElement(store, "format", type="qcow2")
        return etree.tostring(root, encoding="unicode")

    def domain_xml(self, name: str) -> str:
        root = copy.deepcopy(self.template)
        root.find("name").text = name  # type: ignore[union-attr]
        sources = root.findall("devices/disk/source[@volume]")
        sources[0].set("volume", f"{name}-disk0.qcow2")
        sources[1].set("volume", f"{name}-seed.iso")
        for logfile in root.iterfind("devices/serial/log"):
            logfile.set("file", f"/var/log/libvirt/qemu/{name}-serial.log")
        return etree.tostring(root, encoding="unicode")

    def create(self, name: str) -> None:
        from kvmhub.tools.seed import build_nocloud_seed

        pool = self.conn.storagePoolLookupByName(self.pool)
        pool.createXML(self.volume_xml(f"{name}-disk0.qcow2", self.image_capacity, "qcow2", self.image_path), 0)
        iso = build_nocloud_seed(f"instance-id: {uuid.uuid4()}\nlocal-hostname: {name}\n", "#cloud-config\n")
        seed = pool.createXML(self.volume_xml(f"{name}-seed.iso", len(iso), "raw", None), 0)
        stream = self.conn.newStream(0)
        seed.upload(stream, 0, len(iso), 0)
        stream.send(iso)
        stream.finish()
        self.conn.defineXML(self.domain_xml(name))

    def remove(self, name: str) -> None:
        self.conn.lookupByName(name).undefine()
        pool = self.conn.storagePoolLookupByName(self.pool)
        for vol in (f"{name}-disk0.qcow2", f"{name}-seed.iso"):
            pool.storageVolLookupByName(vol).delete(0)


# -- the library, in this process and in workers --------------------------------------------------------


def library_create(hv: Any, name: str, network: str | None = None) -> None:
    from kvmhub.models import CreateRequest
    from kvmhub.services.vm.create import create

    create(hv, CreateRequest(name=name, image=IMAGE, network=network, start=False))


def _worker(conn: Connection) -> None:
    """A warm worker process: connects once, then creates every batch of names it is sent."""
    from kvmhub.hv import Hypervisor
    from kvmhub.services.host.accel import accelerator
    from kvmhub.services.vm import create as vm_create  # noqa: F401 - imported before the clock starts

    accelerator()  # read from the cache the parent's probe wrote
    with Hypervisor(os.environ["KVMHUB_URI"]) as hv:
        hv.conn  # noqa: B018 - connected before the clock starts
        conn.send("ready")
        while (batch := conn.recv()) is not None:
            names, network = batch
            try:
                for name in names:
                    library_create(hv, name, network)
            except Exception as exc:  # reported to the parent, which stops the benchmark
                conn.send(f"{type(exc).__name__}: {exc}")
                continue
            conn.send("ok")


class Workers:
    """P spawned worker processes, started and connected before anything is timed."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child,), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise CommandFailed("a worker did not start")

    def run(self, batches: list[list[str]], network: str | None) -> float:
        """Send one batch per worker (from the first), wait for all; seconds from the first send."""
        start = time.perf_counter()
        for pipe, batch in zip(self.pipes, batches, strict=False):
            pipe.send((batch, network))
        answers = [pipe.recv() for pipe, _ in zip(self.pipes, batches, strict=False)]
        elapsed = time.perf_counter() - start
        if failed := [a for a in answers if a != "ok"]:
            raise CommandFailed(f"library creates failed: {failed[:3]}")
        return elapsed

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()


# -- the benchmark --------------------------------------------------------------------------------------


def setup(host: TestHost, hv: Any) -> Bare:
    """Pools, the tiny image and network `lab` on the host; the bare contender built from a kvmhub VM."""
    from kvmhub.services.host.accel import accelerator
    from kvmhub.services.storage import default_pools as pools
    from kvmhub.services.storage import images
    from kvmhub.services.vm import remove as vm_remove
    from kvmhub.tools.tiny.build import build_tiny_image

    image = build_tiny_image()
    env = kvmhub_env(host)
    log("kvmhub host setup --no-network; image import; net create")
    run([*KVMHUB_CLI, "host", "setup", "--no-network"], env=env)
    run([*KVMHUB_CLI, "image", "import", str(image), "--name", IMAGE], env=env)
    run([*KVMHUB_CLI, "net", "create", NETWORK, "--mode", "isolated", "--subnet", SUBNET], env=env)
    accelerator()  # probed (and cached in the state directory) before any timing
    library_create(hv, "template")
    template = etree.fromstring(hv.conn.lookupByName("template").XMLDesc(2).encode())  # VIR_DOMAIN_XML_INACTIVE
    vm_remove.remove(hv, "template")
    for tag in ("uuid", "metadata"):
        if (el := template.find(tag)) is not None:
            template.remove(el)
    vol = images.get(hv, IMAGE)
    return Bare(host.connect(), pools.DISKS_POOL, vol.path, vol.info().capacity, template)


def remove_library_vms(hv: Any, names: list[str]) -> None:
    from kvmhub.services.vm import remove as vm_remove

    for name in names:
        vm_remove.remove(hv, name)


def profile_creates(hv: Any, count: int, network: str | None) -> None:
    """cProfile ``count`` library creates; the top of the cumulative profile, and kvmhub's ops/, on stderr."""
    names = [f"prof{i:03d}" for i in range(count)]
    prof = cProfile.Profile()
    prof.enable()
    for name in names:
        library_create(hv, name, network)
    prof.disable()
    remove_library_vms(hv, names)
    out = io.StringIO()
    log(f"profile of {count} library creates, network {network}")
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(45)
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats("ops/|sqlite", 25)
    print(out.getvalue(), file=sys.stderr)


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_ops",
        [
            (("--creates",), {"type": int, "default": 100, "help": "creates per side per round (default 100)"}),
            (("--parallel",), {"type": int, "default": 20, "help": "parallel creates (default 20)"}),
            (("--profile",), {"action": "store_true", "help": "cProfile the library creates (stderr)"}),
        ],
        smoke={"creates": 5, "parallel": 4},
    )
    state = tempfile.mkdtemp(prefix="kvmhub-bench-ops-")
    os.environ["KVMHUB_STATE_DIR"] = state  # journal, locks and accelerator cache: this run's own
    accel = accelerator_name()
    samples = Samples(order=["kvmhub", "libvirt", "parallel", "serial", "parallel-nonet", "serial-nonet"])
    load_before = os.getloadavg()
    try:
        with private_host() as host:
            os.environ.update(host.env())
            from kvmhub.hv import Hypervisor

            with Hypervisor(host.uri) as hv:
                bare = setup(host, hv)
                if args.profile:
                    profile_creates(hv, args.creates, None)
                    profile_creates(hv, args.creates, NETWORK)
                workers = Workers(args.parallel)
                try:
                    for r in range(args.runs):
                        time_creates(hv, bare, samples, r, args.creates)
                        time_parallel(hv, workers, samples, r, args.parallel)
                finally:
                    workers.close()
                    bare.conn.close()
                check_clean(host)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    per_create = {k: round(samples.median(k) / (args.creates if k in ("kvmhub", "libvirt") else args.parallel)
                           * 1000, 1) for k in samples.order}
    report(
        benchmark="ops",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=["libvirt"],
        as_json=args.json,
        targets=TARGETS,
        notes={
            "compare": COMPARE,
            "counts": f"{args.creates} creates per side; {args.parallel} parallel vs serial",
            "per_create_ms": per_create,
            "bytecode": BYTECODE_NOTE,
            "loadavg": [load_before, os.getloadavg()],
        },
        extra_ratios=[("parallel", "serial"), ("parallel-nonet", "serial-nonet")],
    )
    return 0


def time_creates(hv: Any, bare: Bare, samples: Samples, r: int, count: int) -> None:
    """``count`` creates each way, interleaved one by one; the batch totals recorded."""
    totals = {"kvmhub": 0.0, "libvirt": 0.0}
    made: dict[str, list[str]] = {"kvmhub": [], "libvirt": []}
    try:
        for i in range(count):
            for who in ("kvmhub", "libvirt"):
                name = f"{who[0]}{r:02d}-{i:03d}"
                start = time.perf_counter()
                if who == "kvmhub":
                    library_create(hv, name)
                else:
                    bare.create(name)
                totals[who] += time.perf_counter() - start
                made[who].append(name)
    finally:
        remove_library_vms(hv, made["kvmhub"])
        for name in made["libvirt"]:
            bare.remove(name)
    for who, total in totals.items():
        samples.add(who, total)
    log(f"round {r + 1}: {count} creates: kvmhub {totals['kvmhub']:.2f} s, libvirt {totals['libvirt']:.2f} s")


def time_parallel(hv: Any, workers: Workers, samples: Samples, r: int, count: int) -> None:
    """The same ``count`` creates one after another in one worker, then all at once in ``count`` workers;
    on network `lab` (``serial``, ``parallel``), then without a NIC (``-nonet``)."""
    for network, suffix in ((NETWORK, ""), (None, "-nonet")):
        for how in ("serial", "parallel"):
            names = [f"{how[0]}{suffix[1:2]}{r:02d}-{i:03d}" for i in range(count)]
            batches = [names] if how == "serial" else [[n] for n in names]
            try:
                elapsed = workers.run(batches, network)
            finally:
                remove_library_vms(hv, [n for n in names if _exists(hv, n)])
            samples.add(how + suffix, elapsed)
            log(f"round {r + 1}: {count} creates {how}{suffix}: {elapsed:.2f} s")


def _exists(hv: Any, name: str) -> bool:
    from kvmhub.hv import domains

    return domains.exists(hv, name)


def check_clean(host: TestHost) -> None:
    """Warn (stderr) about any domain or volume the benchmark left behind."""
    domains = host.virsh("list", "--all", "--name").stdout.split()
    volumes = host.virsh("vol-list", "default").stdout.split("\n")[2:]
    volumes = [v.split()[0] for v in volumes if v.strip()]
    if domains or volumes:
        log(f"warning: left behind: domains {domains}, volumes {volumes}")
    else:
        log("clean: no domain or VM volume left on the test host")


if __name__ == "__main__":
    script(main)
