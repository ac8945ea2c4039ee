"""`.ci/run` sets KVMHUB_REQUIRE_INTEGRATION=1: a machine that cannot run test hosts fails instead of skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_TESTS = '''
import pytest

def test_needs_host(test_host):
    pass

def test_runs_own_hosts(test_hosts_possible):
    pass

def test_kernel_feature_missing():
    pytest.skip("this kernel has no NFS client")
'''


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_guard.py").write_text(_TESTS)
    base = {k: v for k, v in os.environ.items() if not k.startswith("KVMHUB_")}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rs",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_guard.py")],
        capture_output=True, text=True, env={**base, **env}, cwd=tmp_path, timeout=120, check=False,
    )


def test_without_ci_a_machine_without_test_hosts_skips(tmp_path: Path) -> None:
    r = _pytest(tmp_path, KVMHUB_TEST_HOST_UNAVAILABLE="pretend libvirtd is missing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 skipped" in r.stdout, r.stdout
    assert "no private test host here: pretend libvirtd is missing" in r.stdout


def test_under_ci_a_machine_without_test_hosts_fails(tmp_path: Path) -> None:
    r = _pytest(tmp_path, KVMHUB_TEST_HOST_UNAVAILABLE="pretend libvirtd is missing", KVMHUB_REQUIRE_INTEGRATION="1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 errors" in r.stdout and "1 skipped" in r.stdout, r.stdout
    assert "KVMHUB_REQUIRE_INTEGRATION=1: integration tests must run" in r.stdout
    assert "this kernel has no NFS client" in r.stdout


def test_ci_script_requires_integration_tests() -> None:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert "export KVMHUB_REQUIRE_INTEGRATION=1" in lines
    assert lines.index("export KVMHUB_REQUIRE_INTEGRATION=1") < lines.index("make test")


def test_ci_runs_lint_with_the_layer_rules() -> None:
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert "make lint" in lines
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "ruff check src tests benchmarks" in recipe and "mypy" in recipe and "tests/unit/test_layers.py" in recipe
