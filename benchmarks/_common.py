"""Shared plumbing for the kvmhub benchmarks: arguments, a private test host, timing, reporting.

Every benchmark compares kvmhub with the tools a user would otherwise use, in the same run and interleaved,
on a private :class:`kvmhub.testing.TestHost` (never the machine's own libvirt). Progress goes to stderr;
stdout carries only the table, or with ``--json`` exactly one JSON object (format: docs BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from kvmhub.testing import TestHost

REPO = Path(__file__).resolve().parent.parent
# the virtualenv that runs the benchmark (the repo's .venv when run as the README says) runs kvmhub too
PYTHON = sys.executable
KVMHUB = str(Path(sys.executable).with_name("kvmhub"))


def parse_args(
    description: str,
    extra: Sequence[tuple[Sequence[str], Mapping[str, Any]]] = (),
    smoke: Mapping[str, Any] | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """``--runs N`` (default 5), ``--json`` and ``--smoke``, plus any benchmark-specific options.

    ``--smoke`` (what ``make test`` runs) means one run, no warm-up, and the option values in ``smoke``
    (the benchmark's smallest sizes) in place of their defaults.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout and nothing else")
    parser.add_argument("--smoke", action="store_true",
                        help="one run, no warm-up, smallest sizes: checks that the benchmark still works")
    for flags, kwargs in extra:
        parser.add_argument(*flags, **kwargs)
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs = 1
        if hasattr(args, "warmup"):
            args.warmup = 0
        for key, value in (smoke or {}).items():
            setattr(args, key, value)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def log(message: str) -> None:
    """Progress, on stderr so that stdout stays machine-readable."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def accelerator_name() -> str:
    """The accelerator kvmhub picks for guests on this machine: "tcg" or "kvm"."""
    from kvmhub.services.host.accel import accelerator

    return accelerator().accelerator


@dataclass
class Samples:
    """Wall-clock samples (seconds) per contender, in the order they were taken."""

    order: list[str]
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.values.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def summary(self, unit: str = "s") -> dict[str, dict[str, float]]:
        scale = 1000.0 if unit == "ms" else 1.0
        digits = 1 if unit == "ms" else 3
        out: dict[str, dict[str, float]] = {}
        for name in self.order:
            vals = self.values.get(name)
            if not vals:
                continue
            out[name] = {
                f"median_{unit}": round(statistics.median(vals) * scale, digits),
                f"min_{unit}": round(min(vals) * scale, digits),
                f"max_{unit}": round(max(vals) * scale, digits),
            }
        return out

    def ratios(self, anchors: Sequence[str], subject: str = "kvmhub") -> dict[str, float]:
        return {
            f"{subject}/{anchor}": round(self.median(subject) / self.median(anchor), 3)
            for anchor in anchors
            if self.values.get(anchor) and self.values.get(subject)
        }


def report(
    *,
    benchmark: str,
    runs: int,
    accelerator: str,
    samples: Samples,
    anchors: Sequence[str],
    as_json: bool,
    unit: str = "s",
    targets: Mapping[str, float] | None = None,
    notes: Mapping[str, Any] | None = None,
    extra_ratios: Sequence[tuple[str, str]] = (),
) -> None:
    """Print the results: one JSON object (BENCHMARKS.md format, plus ``notes``) or a readable table."""
    results = samples.summary(unit)
    ratios = samples.ratios(anchors)
    for subject, anchor in extra_ratios:
        ratios.update(samples.ratios([anchor], subject=subject))
    if as_json:
        doc: dict[str, Any] = {
            "benchmark": benchmark,
            "runs": runs,
            "accelerator": accelerator,
            "results": results,
            "ratios": ratios,
        }
        if targets:
            doc["targets"] = dict(targets)
        if notes:
            doc.update(notes)
        print(json.dumps(doc))
        return
    print(f"benchmark {benchmark}: {runs} runs, accelerator {accelerator}")
    for key, value in (notes or {}).items():
        if isinstance(value, str):
            print(f"  {key}: {value}")
    print()
    width = max(len(n) for n in results) if results else 8
    print(f"{'what':<{width}}  {'median':>10}  {'min':>10}  {'max':>10}   runs ({unit})")
    for name, row in results.items():
        each = " ".join(_fmt(v * (1000.0 if unit == "ms" else 1.0), unit) for v in samples.values[name])
        print(
            f"{name:<{width}}  {_fmt(row[f'median_{unit}'], unit):>10}  {_fmt(row[f'min_{unit}'], unit):>10}"
            f"  {_fmt(row[f'max_{unit}'], unit):>10}   {each}"
        )
    print()
    kwidth = max((len(k) for k in ratios), default=0)
    for key, value in ratios.items():
        target = (targets or {}).get(key)
        verdict = ""
        if target is not None:
            verdict = f"  (target <= {target:g}: {'met' if value <= target else 'MISSED'})"
        print(f"{key:<{kwidth}} {value:6.2f}x{verdict}", flush=True)


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f}" if unit == "ms" else f"{value:.3f}"


@contextlib.contextmanager
def private_host() -> Iterator[TestHost]:
    """A started private test host, stopped whatever happens (exceptions, Ctrl-C, SIGTERM)."""
    global _PYCACHE
    host = TestHost()
    previous = signal.getsignal(signal.SIGTERM)
    _PYCACHE = tempfile.mkdtemp(prefix="kvmhub-bench-pycache-")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the finally below, which stops the host

    signal.signal(signal.SIGTERM, on_term)
    try:
        log("starting a private test host")
        host.start()
        log(f"test host {host.id} up ({host.uri})")
        yield host
    finally:
        # A second Ctrl-C during teardown must not leave the namespaces behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            log(f"stopping test host {host.id}")
            host.stop()
        finally:
            shutil.rmtree(_PYCACHE, ignore_errors=True)
            _PYCACHE = None
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)


# kvmhub processes keep their bytecode here (made by private_host): a machine with PYTHONDONTWRITEBYTECODE=1
# would otherwise recompile every kvmhub module on every run, which an installed kvmhub never does.
_PYCACHE: str | None = None
BYTECODE_NOTE = "kvmhub runs with its .pyc cached (private PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE dropped)"


def kvmhub_env(host: TestHost) -> dict[str, str]:
    """The caller's environment pointed at ``host`` (and nothing else of libvirt's defaults)."""
    drop = ("LIBVIRT_DEFAULT_URI", "VIRSH_DEFAULT_CONNECT_URI", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(host.env())
    if _PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


class CommandFailed(RuntimeError):
    """A setup or timed command exited non-zero."""


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 300.0) -> str:
    """Run a command, return its stdout; CommandFailed (with its stderr) on a non-zero exit."""
    done = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def kvmhub(host: TestHost, *args: str, timeout: float = 300.0) -> str:
    """Run ``kvmhub args...`` against ``host``."""
    return run([KVMHUB, *args], env=kvmhub_env(host), timeout=timeout)


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)}")


class LogWatcher:
    """Reads a growing file incrementally and tells when ``marker`` has appeared in it."""

    def __init__(self, path: Path, marker: str) -> None:
        self.path = path
        self.marker = marker.encode()
        self._offset = 0
        self._tail = b""
        self.seen = False

    def check(self) -> bool:
        if self.seen:
            return True
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return False
        if chunk:
            self._offset += len(chunk)
            window = self._tail + chunk
            if self.marker in window:
                self.seen = True
            self._tail = window[-len(self.marker) :]
        return self.seen


class GuestClock:
    """Polls a guest's serial log on a thread from ``start`` (a perf_counter value) on and records, in
    seconds since ``start``, when the file first existed (the emulator was launched: libvirt's virtlogd or
    QEMU's ``-serial file:`` opens it) and when ``marker`` first appeared in it."""

    def __init__(self, path: Path, marker: str, start: float, poll: float) -> None:
        self.watch = LogWatcher(path, marker)
        self.start = start
        self.poll = poll
        self.appeared: float | None = None
        self.marked: float | None = None
        self._seen = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter() - self.start
            if self.appeared is None and self.watch.path.exists():
                self.appeared = now
            if self.watch.check():
                self.marked = now
                self._seen.set()
                return
            self._stop.wait(self.poll)

    def wait(self, timeout: float, alive: Any = None) -> float:
        """Seconds from ``start`` to the marker; TimeoutError / CommandFailed if it never comes."""
        deadline = time.monotonic() + timeout
        while not self._seen.wait(0.1):
            if alive is not None and not alive():
                raise CommandFailed(f"the guest exited before {self.watch.marker.decode()} in {self.watch.path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.watch.marker.decode()} not in {self.watch.path} within {timeout:.0f} s")
        assert self.marked is not None
        return self.marked

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def script(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's ``main`` as a script: its exit code, 130 (and no traceback) on Ctrl-C."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
