"""The operations benchmark's smoke mode runs to the end, reports every figure and leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvmhub.testing import missing_requirements

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ops.py"


@pytest.mark.integration
def test_bench_ops_smoke() -> None:
    if problems := missing_requirements():
        pytest.skip("no private test host here: " + "; ".join(problems))
    done = subprocess.run([sys.executable, str(BENCH), "--smoke", "--json"], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["benchmark"] == "ops" and doc["runs"] == 1
    for who in ("kvmhub", "libvirt", "parallel", "serial", "parallel-nonet", "serial-nonet"):
        assert doc["results"][who]["median_s"] > 0, who
    assert set(doc["ratios"]) == {"kvmhub/libvirt", "parallel/serial", "parallel-nonet/serial-nonet"}
    assert "clean: no domain or VM volume left on the test host" in done.stderr
