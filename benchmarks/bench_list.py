"""Listing 500 VMs: `kvmhub ls` (and `kvmhub ls --json`) vs `virsh list --all`, whole processes.

A private test host gets 500 defined, never started domains (minimal XML through libvirt-python's
``defineXML``); then ``kvmhub ls``, ``kvmhub ls --json`` and ``virsh -c URI list --all`` are timed as whole
processes, interleaved, with their output read from a pipe. When kvmhub misses the target (or with
``--profile``) the run also reports where one ``kvmhub ls`` spends its time: interpreter start-up, imports
(``-X importtime``), the libvirt calls, building rows, rendering, and cProfile's top functions.

Run from the repo root: ``.venv/bin/python benchmarks/bench_list.py [--runs N] [--json] [--profile]``.
"""

from __future__ import annotations

import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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
    require_tools,
    script,
)
from kvmhub.testing import TestHost

DOMAINS = 500
TARGET = 1.0  # the speed issue's goal for a local-mode listing
PHASES_SCRIPT = str(Path(__file__).resolve().with_name("_ls_phases.py"))
COMPARE = "{} defined (shut off) domains; whole-process wall time, stdout read from a pipe"


def domain_xml(i: int) -> str:
    return (
        f"<domain type='qemu'><name>bl{i:04d}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )


def define_domains(host: TestHost, count: int) -> None:
    start = time.perf_counter()
    conn = host.connect()
    try:
        for i in range(count):
            conn.defineXML(domain_xml(i))
    finally:
        conn.close()
    log(f"defined {count} domains in {time.perf_counter() - start:.1f} s")


def undefine_domains(host: TestHost) -> None:
    conn = host.connect()
    try:
        for dom in conn.listAllDomains(0):
            if str(dom.name()).startswith("bl"):
                dom.undefine()
    finally:
        conn.close()


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, done.stdout


def check_outputs(host: TestHost, env: dict[str, str], domains: int) -> None:
    """All three list the same domains (so nobody is timed doing less work)."""
    _, table = timed([KVMHUB, "ls"], env)
    _, js = timed([KVMHUB, "ls", "--json"], env)
    _, vl = timed(["virsh", "-c", host.uri, "list", "--all"], env)
    counts = {
        "kvmhub ls": sum(1 for line in table.splitlines() if line.startswith("bl")),
        "kvmhub ls --json": len(json.loads(js)),
        "virsh list --all": sum(1 for line in vl.splitlines() if " bl" in line),
    }
    log(f"rows listed: {counts}")
    if set(counts.values()) != {domains}:
        raise CommandFailed(f"expected {domains} domains from each lister, got {counts}")


# -- profile ----------------------------------------------------------------------------------------------


def _median_ms(argv: Sequence[str], env: dict[str, str], n: int = 5) -> float:
    return round(statistics.median(timed(argv, env)[0] for _ in range(n)) * 1000.0, 1)


LS_IMPORTS = "import kvmhub.cli.main, kvmhub.services.vm.lifecycle, kvmhub.validate"


def _import_breakdown(env: dict[str, str], top: int = 10) -> dict[str, Any]:
    """``-X importtime`` of what ``kvmhub ls`` imports: the total, and the modules' own (self) times summed
    per third-party distribution (``rich``, ``pydantic``, ...) and per kvmhub module; self times add up."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", LS_IMPORTS], env=env, capture_output=True, text=True, check=True
    )
    packages: dict[str, float] = {}
    own: dict[str, float] = {}
    total = 0.0
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        self_ms, cumulative, name = int(m.group(1)) / 1000.0, int(m.group(2)) / 1000.0, m.group(4)
        if len(m.group(3)) == 1:  # outermost imports add up to the total
            total += cumulative
        if name.startswith("kvmhub"):
            own[name] = self_ms
        else:
            top_name = name.split(".")[0]
            packages[top_name] = packages.get(top_name, 0.0) + self_ms

    def ranked(d: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 1) for k, v in sorted(d.items(), key=lambda kv: kv[1], reverse=True)[:top]}

    return {
        "total_ms": round(total, 1),
        "other_packages_self_ms": ranked(packages),
        "kvmhub_all_modules_self_ms": round(sum(own.values()), 1),
        "kvmhub_modules_self_ms": ranked(own),
    }


def _phases(env: dict[str, str], n: int = 3) -> dict[str, float]:
    runs = [json.loads(subprocess.run([PYTHON, PHASES_SCRIPT], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(n)]  # fmt: skip
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}


def _cprofile(env: dict[str, str], top: int = 12) -> list[tuple[str, float, float]]:
    """cProfile of a real `kvmhub ls` (main thread): (function, own ms, cumulative ms), by cumulative."""
    with tempfile.TemporaryDirectory(prefix="bench-list-") as tmp:
        out = os.path.join(tmp, "ls.prof")
        subprocess.run(
            [PYTHON, "-m", "cProfile", "-o", out, "-m", "kvmhub.cli.main", "ls"],
            env=env,
            capture_output=True,
            check=False,
        )
        stats = pstats.Stats(out)
    rows: list[tuple[str, float, float]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, _nc, tottime, cumtime, _callers) in raw.items():
        short = filename.split("site-packages/")[-1].split("/src/")[-1]
        rows.append((f"{short}:{line}({func})", round(tottime * 1000.0, 1), round(cumtime * 1000.0, 1)))
    # Leave out the frames every call passes through (entry point, typer/click dispatch, import machinery).
    plumbing = ("<frozen", "<string>", "builtins.exec", "typer/", "click/", "cli/main.py", "(<module>)")
    interesting = [r for r in rows if not any(p in r[0] for p in plumbing)]
    return sorted(interesting, key=lambda r: r[2], reverse=True)[:top]


def profile(host: TestHost, env: dict[str, str], ls_median_s: float) -> dict[str, Any]:
    log("profiling kvmhub ls")
    startup = _median_ms([PYTHON, "-c", "pass"], env)
    imports = _import_breakdown(env)
    phases = _phases(env)
    by_own = sorted(_cprofile(env, top=40), key=lambda r: r[1], reverse=True)[:10]
    return {
        "kvmhub_ls_median_ms": round(ls_median_s * 1000.0, 1),
        "python_startup_ms": startup,
        "imports_of_ls (-X importtime)": imports.pop("total_ms"),
        "phases_ms (in-process, median of 3)": phases,
        "unaccounted_ms (start-up, exit, console-script)": round(
            ls_median_s * 1000.0 - startup - sum(phases.values()), 1
        ),
        **imports,
        "cprofile_top_cumulative_ms": {name: cum for name, _own, cum in _cprofile(env)},
        "cprofile_top_own_ms": {name: own for name, own, _cum in by_own},
    }


def print_profile(prof: dict[str, Any]) -> None:
    print("\nwhere one `kvmhub ls` spends its time:")
    for key, value in prof.items():
        if isinstance(value, dict):
            print(f"  {key}:")
            for name, ms in value.items():
                print(f"    {ms:9.1f}  {name}")
        elif isinstance(value, float):
            print(f"  {key}: {value:.1f}")
        else:
            print(f"  {key}: {value}")


# -- main -------------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0] if __doc__ else "bench_list",
        [
            (("--profile",), {"action": "store_true", "help": "profile kvmhub ls even when it meets the target"}),
            (("--warmup",), {"type": int, "default": 1, "help": "untimed rounds first (default 1)"}),
            (("--domains",), {"type": int, "default": DOMAINS, "help": f"defined domains (default {DOMAINS})"}),
        ],
        smoke={"domains": 20},
    )
    require_tools("virsh")
    accel = accelerator_name()
    contenders = {
        "kvmhub": [KVMHUB, "ls"],
        "kvmhub-json": [KVMHUB, "ls", "--json"],
    }
    samples = Samples(order=["kvmhub", "kvmhub-json", "virsh"])
    prof: dict[str, Any] | None = None
    with private_host() as host:
        env = kvmhub_env(host)
        contenders["virsh"] = ["virsh", "-c", host.uri, "list", "--all"]
        try:
            define_domains(host, args.domains)
            check_outputs(host, env, args.domains)
            for i in range(args.warmup + args.runs):
                row = []
                for name, argv in contenders.items():
                    seconds, _ = timed(argv, env)
                    if i >= args.warmup:
                        samples.add(name, seconds)
                    row.append(f"{name} {seconds * 1000:.0f} ms")
                log(("warm-up: " if i < args.warmup else f"run {i - args.warmup + 1}/{args.runs}: ") + ", ".join(row))
            ratio = samples.median("kvmhub") / samples.median("virsh")
            if args.profile or ratio > TARGET:
                prof = profile(host, env, samples.median("kvmhub"))
        finally:
            undefine_domains(host)
    notes: dict[str, Any] = {"compare": COMPARE.format(args.domains), "bytecode": BYTECODE_NOTE, "warmup": args.warmup}
    if prof is not None and args.json:
        notes["profile"] = prof
    report(
        benchmark="list",
        runs=args.runs,
        accelerator=accel,
        samples=samples,
        anchors=["virsh"],
        as_json=args.json,
        unit="ms",
        targets={"kvmhub/virsh": TARGET},
        notes=notes,
        extra_ratios=[("kvmhub-json", "virsh")],
    )
    if prof is not None and not args.json:
        print_profile(prof)
    return 0


if __name__ == "__main__":
    script(main)
