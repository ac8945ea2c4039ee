"""Fixtures for tests that drive kvmhub against a private test host, as a user would: the `kvmhub` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kvmhub.testing import TestHost

KVMHUB = [sys.executable, "-m", "kvmhub.cli"]


def ctrl_c_able() -> None:
    """``preexec_fn`` of a kvmhub process a test stops with SIGINT: a job a shell starts in the background inherits
    SIGINT ignored (so would the tests, run that way), and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
LAB_NET = "lab"
LAB_SUBNET = "10.77.0.0/24"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]


def run_kvmhub(host: TestHost, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
    full_env = {**os.environ, **host.env(), **(env or {})}
    proc = subprocess.run(
        [*KVMHUB, *args], capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def kvmhub(test_host: TestHost) -> Runner:
    """Run the kvmhub CLI against the session's test host; returns exit code, stdout, stderr."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        return run_kvmhub(test_host, *args, env=env, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def tiny_image_file() -> Path:
    """The tiny appliance qcow2, built once (cached outside the repo)."""
    from kvmhub.tools.tiny.build import build_tiny_image

    return build_tiny_image()


@pytest.fixture(scope="session")
def prepared_host(test_host: TestHost, kvmhub: Runner, tiny_image_file: Path) -> TestHost:
    """The test host with kvmhub's pools, the `tiny` image and an isolated network `lab`."""
    r = kvmhub("host", "setup", "--no-network")
    assert r.code == 0, r.err + r.out
    r = kvmhub("image", "import", str(tiny_image_file), "--name", "tiny")
    assert r.code == 0, r.err
    r = kvmhub("net", "create", LAB_NET, "--mode", "isolated", "--subnet", LAB_SUBNET)
    assert r.code == 0, r.err
    return test_host


@pytest.fixture(scope="module")
def booted_vm(prepared_host: TestHost, kvmhub: Runner, request: pytest.FixtureRequest) -> Iterator[str]:
    """A tiny VM on `lab`, created with --wait (booted and networked); removed after the module."""
    name = f"vm-{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}".replace("_", "-")[:60]
    with tiny_vm(kvmhub, name):
        yield name


@contextmanager
def tiny_vm(kvmhub: Runner, name: str, *options: str) -> Iterator[str]:
    """A tiny VM on `lab` created with --wait and ``options`` (booted and networked); removed afterwards."""
    r = kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", *options, "--wait",
               "--timeout", "240")
    assert r.code == 0, r.err
    try:
        yield name
    finally:
        kvmhub("rm", name)
