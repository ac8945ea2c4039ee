"""Storage: linked-clone creation vs image size, image import vs `qemu-img convert`, full clone vs `cp`.

On a private test host, each round, interleaved:

- linked clones: for images of 1, 10 and 100 GiB virtual size (sparse qcow2 files, imported with
  ``kvmhub image import``), the overlay volume a linked clone makes, timed in process (the library call,
  ``linked-lib-*``) and as a whole ``kvmhub clone SRC DST --linked`` process (``linked-cli-*``), next to
  ``virsh vol-create-as --backing-vol`` of the same overlay (``virsh-overlay-*``). Target: <= 50 ms each,
  flat in size.
- import: ``kvmhub image import FILE --format raw`` end to end (convert to qcow2, store through libvirt) vs a
  bare ``qemu-img convert -f raw -O qcow2`` of the same file of random data into the same file system.
- full clone: ``kvmhub clone SRC DST`` of a VM whose disk is a self-contained qcow2 holding the same
  random data (and, for reference, libvirt's own volume copy of it: ``full-clone-libvirt``) vs
  ``cp --reflink=never`` of that disk's file, and (``cp-sync``) cp followed by ``sync FILE``: libvirt's copy
  (qemu-img convert) ends by flushing the new file to disk, cp leaves it in the page cache.

``kvmhub/qemu-img-convert``, ``kvmhub/cp``, ``libvirt/cp`` and ``kvmhub/cp+sync`` are throughput ratios
(anchor time / kvmhub time; higher is better, target >= 0.9 for the import, 0.8 for the copies); the
others are time ratios.

Run from the repo root: ``.venv/bin/python benchmarks/bench_storage.py [--runs N] [--json] [--data-mib M]``.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: `benchmarks` imports

from benchmarks._common import (
    BYTECODE_NOTE,
    Samples,
    accelerator_name,
    kvmhub,
    log,
    parse_args,
    private_host,
    require_tools,
    run,
    script,
)
from kvmhub.hv import Hypervisor
from kvmhub.services.storage import default_pools as pools
from kvmhub.services.storage import images
from kvmhub.testing import TestHost
from kvmhub.xml import volume as xml_volume

SIZES_GIB = (1, 10, 100)
DISKS = "/var/lib/libvirt/images"
FULL_SRC = "bfull-src"
FULL_FLAT = "bfull"
TARGETS = {"linked_ms": 50.0, "kvmhub/qemu-img-convert": 0.9, "kvmhub/cp": 0.8,
           "kvmhub/cp+sync": 0.8}
COMPARE = (
    "linked-*: the overlay of a linked clone on images of 1/10/100 GiB virtual size (lib = the library's "
    "volume call in process, cli = a whole `kvmhub clone --linked` process, virsh = vol-create-as "
    "--backing-vol); import: `kvmhub image import --format raw` vs `qemu-img convert -f raw -O qcow2`; "
    "full-clone: `kvmhub clone` (full) vs `cp --reflink=never` of the source disk's file"
)


@dataclass
class Bench:
    host: TestHost
    hv: Hypervisor
    work: Path
    raw: Path

    def timed(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    # -- linked clones ------------------------------------------------------------------------------------

    def linked_round(self, i: int) -> dict[str, float]:
        took: dict[str, float] = {}
        pool = pools.disks_pool(self.hv)
        for size in SIZES_GIB:
            image = images.get(self.hv, f"big{size}")
            capacity, path = image.info().capacity, image.path
            lib_name, virsh_name, vm = f"lib{size}-{i}.qcow2", f"virsh{size}-{i}.qcow2", f"blink{size}"

            def overlay(name: str = lib_name, cap: int = capacity, backing: str = path) -> None:
                pool.create_volume(xml_volume.volume_xml(name, cap, "qcow2", backing, "qcow2"),
                                   what="making a linked-clone overlay")

            took[f"linked-lib-{size}gib"] = self.timed(overlay)
            virsh = ["virsh", "-q", "-c", self.host.uri, "vol-create-as", "default", virsh_name, str(capacity),
                     "--format", "qcow2", "--backing-vol", path, "--backing-vol-format", "qcow2"]
            took[f"virsh-overlay-{size}gib"] = self.timed(functools.partial(run, virsh))
            took[f"linked-cli-{size}gib"] = self.timed(
                functools.partial(kvmhub, self.host, "clone", vm, f"{vm}-c", "--linked"))
            for name in (lib_name, virsh_name):
                pool.volume(name).delete()
            kvmhub(self.host, "rm", f"{vm}-c")
        return took

    # -- import -------------------------------------------------------------------------------------------

    def import_round(self, i: int) -> dict[str, float]:
        out = self.host.inside(f"{DISKS}/convert-{i}.qcow2")
        took = {
            "import-kvmhub": self.timed(lambda: kvmhub(self.host, "image", "import", str(self.raw), "--name",
                                                       f"imp{i}", "--format", "raw", timeout=900)),
            "import-qemu-img-convert": self.timed(lambda: run(
                ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(self.raw), str(out)], timeout=900)),
        }
        out.unlink()
        kvmhub(self.host, "image", "rm", f"imp{i}")
        return took

    # -- full clone ---------------------------------------------------------------------------------------

    def full_round(self, i: int) -> dict[str, float]:
        src = self.host.inside(f"{DISKS}/{FULL_FLAT}-disk0.qcow2")
        copy = self.host.inside(f"{DISKS}/cp-{i}.qcow2")
        pool = pools.disks_pool(self.hv)
        vol = pool.volume(f"{FULL_FLAT}-disk0.qcow2")
        capacity = vol.info().capacity

        def library() -> None:
            pool.create_volume_from(xml_volume.volume_xml(f"lib-copy-{i}.qcow2", capacity, "qcow2"), vol,
                                    what="copying the disk")

        took = {
            "full-clone-kvmhub": self.timed(lambda: kvmhub(self.host, "clone", FULL_FLAT, f"bf{i}", timeout=900)),
            "full-clone-cp": self.timed(lambda: run(["cp", "--reflink=never", str(src), str(copy)], timeout=900)),
            "full-clone-libvirt": self.timed(library),
        }
        copy.unlink()
        took["full-clone-cp-sync"] = self.timed(lambda: (run(["cp", "--reflink=never", str(src), str(copy)],
                                                             timeout=900), run(["sync", str(copy)])))
        copy.unlink()
        pool.volume(f"lib-copy-{i}.qcow2").delete()
        kvmhub(self.host, "rm", f"bf{i}")
        return took


def setup(host: TestHost, work: Path, data_mib: int) -> Path:
    """Pools, the sparse images and their never-started VMs, the random data file, the full-clone source."""
    kvmhub(host, "host", "setup", "--no-network")
    for size in SIZES_GIB:
        sparse = work / f"big{size}.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", str(sparse), f"{size}G"])
        kvmhub(host, "image", "import", str(sparse), "--name", f"big{size}")
        kvmhub(host, "create", f"blink{size}", "--image", f"big{size}", "--memory", "128M", "--no-start")
    log(f"writing {data_mib} MiB of random data")
    raw = work / "data.raw"
    with open(raw, "wb") as fh:
        for _ in range(data_mib):
            fh.write(os.urandom(1024**2))
    data = work / "data.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(data)], timeout=900)
    kvmhub(host, "image", "import", str(data), "--name", "bdata", timeout=900)
    data.unlink()
    kvmhub(host, "create", FULL_SRC, "--image", "bdata", "--memory", "128M", "--no-start")
    # a full clone of it is self-contained: its disk holds all the data, the same bytes cp copies
    kvmhub(host, "clone", FULL_SRC, FULL_FLAT, timeout=900)
    return raw


def _summary(samples: Samples, unit: str) -> dict[str, dict[str, float]]:
    return samples.summary(unit)


def _results(samples: Samples, mib: float) -> tuple[dict[str, Any], dict[str, float]]:
    ms = Samples(order=[n for n in samples.order if n.startswith(("linked-", "virsh-"))], values=samples.values)
    s = Samples(order=[n for n in samples.order if n.startswith(("import-", "full-clone-"))],
                values=samples.values)
    results: dict[str, Any] = {**_summary(ms, "ms"), **_summary(s, "s")}
    for name in s.order:
        results[name]["median_mib_s"] = round(mib / samples.median(name), 1)
    med = samples.median
    ratios = {
        "kvmhub/qemu-img-convert": round(med("import-qemu-img-convert") / med("import-kvmhub"), 3),
        "kvmhub/cp": round(med("full-clone-cp") / med("full-clone-kvmhub"), 3),
        "libvirt/cp": round(med("full-clone-cp") / med("full-clone-libvirt"), 3),
        "kvmhub/cp+sync": round(med("full-clone-cp-sync") / med("full-clone-kvmhub"), 3),
    }
    for size in SIZES_GIB:
        ratios[f"linked-lib-{size}gib/virsh-overlay-{size}gib"] = round(
            med(f"linked-lib-{size}gib") / med(f"virsh-overlay-{size}gib"), 3)
    ratios["linked-lib-100gib/linked-lib-1gib"] = round(med("linked-lib-100gib") / med("linked-lib-1gib"), 3)
    ratios["linked-cli-100gib/linked-cli-1gib"] = round(med("linked-cli-100gib") / med("linked-cli-1gib"), 3)
    return results, ratios


def _print_table(doc: dict[str, Any]) -> None:
    print(f"benchmark {doc['benchmark']}: {doc['runs']} runs, accelerator {doc['accelerator']}")
    print(f"  compare: {doc['compare']}")
    print(f"  data file: {doc['data_mib']} MiB of random data\n")
    width = max(len(n) for n in doc["results"])
    print(f"{'what':<{width}}  {'median':>10}  {'min':>10}  {'max':>10}  {'MiB/s':>8}")
    for name, row in doc["results"].items():
        unit = "ms" if "median_ms" in row else "s"
        cells = [f"{row[f'{k}_{unit}']:.1f} {unit}" if unit == "ms" else f"{row[f'{k}_{unit}']:.3f} {unit}"
                 for k in ("median", "min", "max")]
        rate = f"{row['median_mib_s']:.1f}" if "median_mib_s" in row else ""
        print(f"{name:<{width}}  {cells[0]:>10}  {cells[1]:>10}  {cells[2]:>10}  {rate:>8}")
    print()
    for key, value in doc["ratios"].items():
        verdict = ""
        if key in TARGETS:
            met = "met" if value >= TARGETS[key] else "MISSED"
            verdict = f"  (throughput ratio, target >= {TARGETS[key]:g}: {met})"
        print(f"{key:<42} {value:6.3f}{verdict}")
    linked = [doc["results"][f"linked-lib-{s}gib"]["median_ms"] for s in SIZES_GIB]
    verdict = "met" if max(linked) <= TARGETS["linked_ms"] else "MISSED"
    print(f"{'linked-lib medians (ms)':<42} {', '.join(f'{v:.1f}' for v in linked)}  (target <= 50 ms: {verdict})")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "bench_storage",
                      [(["--data-mib"], {"type": int, "default": 384,
                                         "help": "size of the random data file for import and full clone"})],
                      smoke={"data_mib": 16})
    require_tools("virsh", "qemu-img", "cp")
    accel = accelerator_name()
    load_before = os.getloadavg()
    order = [*(f"{kind}-{s}gib" for kind in ("linked-lib", "linked-cli", "virsh-overlay") for s in SIZES_GIB),
             "import-kvmhub", "import-qemu-img-convert", "full-clone-kvmhub", "full-clone-libvirt", "full-clone-cp",
             "full-clone-cp-sync"]
    samples = Samples(order=order)
    with private_host() as host, tempfile.TemporaryDirectory(prefix="kvmhub-bench-storage-") as tmp:
        os.environ.update(host.env())  # the in-process library calls see the host's files as kvmhub does
        hv = Hypervisor(host.uri)
        try:
            log("setting up images, VMs and the data file")
            raw = setup(host, Path(tmp), args.data_mib)
            bench = Bench(host, hv, Path(tmp), raw)
            rounds: list[tuple[str, Callable[[int], dict[str, float]]]] = [
                ("linked clones", bench.linked_round), ("import", bench.import_round),
                ("full clone", bench.full_round)]
            for i in range(args.runs):
                for what, step in rounds:
                    for name, seconds in step(i).items():
                        samples.add(name, seconds)
                    log(f"run {i + 1}/{args.runs}: {what} done")
        finally:
            for vm in (*(f"blink{s}" for s in SIZES_GIB), FULL_FLAT, FULL_SRC):
                if _exists(host, vm):
                    kvmhub(host, "rm", vm)
            hv.close()
    results, ratios = _results(samples, args.data_mib)
    doc: dict[str, Any] = {
        "benchmark": "storage",
        "runs": args.runs,
        "accelerator": accel,
        "results": results,
        "ratios": ratios,
        "targets": TARGETS,
        "compare": COMPARE,
        "bytecode": BYTECODE_NOTE,
        "data_mib": args.data_mib,
        "loadavg": [load_before, os.getloadavg()],
        "throughput_ratio_keys": ["kvmhub/qemu-img-convert", "kvmhub/cp", "libvirt/cp", "kvmhub/cp+sync"],
        "linked_lib_median_ms": {f"{s}gib": results[f"linked-lib-{s}gib"]["median_ms"] for s in SIZES_GIB},
        "import_mib_s_spread": round(statistics.pstdev(
            [args.data_mib / v for v in samples.values["import-kvmhub"]]), 1),
    }
    if args.json:
        print(json.dumps(doc))
    else:
        _print_table(doc)
    return 0


def _exists(host: TestHost, vm: str) -> bool:
    return host.virsh("dominfo", vm, check=False).returncode == 0


if __name__ == "__main__":
    script(main)
