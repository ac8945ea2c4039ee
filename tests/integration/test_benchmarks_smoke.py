"""Every benchmark still runs: each one in smoke mode (`--smoke --json`: one run, its smallest sizes).

They start their own private test hosts, as a user running them would; the figures are not judged here,
only that each benchmark finishes and reports, in the BENCHMARKS.md format, positive ratios of positive figures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py"))


def _median(row: Any) -> float:
    """The median of one `results` entry (`median_s`, `median_ms`, `median_mibps`, ...), checked to be a number."""
    assert isinstance(row, dict), row
    medians = [v for k, v in row.items() if k.startswith("median_")]
    assert medians and all(isinstance(v, int | float) and math.isfinite(v) for v in medians), row
    return float(medians[0])  # the measured figure; a derived rate (storage's median_mib_s) may follow


@pytest.mark.parametrize("script", BENCHMARKS)
def test_benchmark_smoke(script: str, test_hosts_possible: None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--json"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    doc = json.loads(done.stdout)  # stdout is one JSON object and nothing else
    assert doc["runs"] == 1
    assert doc["benchmark"] == script.removeprefix("bench_").removesuffix(".py")
    results, ratios = doc["results"], doc["ratios"]
    assert results and ratios, doc
    medians = {name: _median(row) for name, row in results.items()}
    assert all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in ratios.values()), ratios
    # what a ratio compares was measured (a difference of two timings, e.g. "-after-marker", may be negative)
    compared = {name for key in ratios for name in key.split("/") if name in medians}
    assert all(medians[name] > 0 for name in compared), (compared, results)
