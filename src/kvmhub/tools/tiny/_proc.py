"""Running host commands for the tiny appliance builder, with kvmhub errors on failure."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from kvmhub.errors import HostProblem, OperationFailed

__all__ = ["run"]


def run(
    argv: Sequence[str],
    *,
    what: str,
    hint: str,
    cwd: Path | None = None,
    timeout: float = 300,
) -> str:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(
            f"{what}: {argv[0]} did not finish in {timeout:.0f} s",
            cause="the command hung",
            hint=hint,
        ) from exc
    except OSError as exc:
        raise HostProblem(f"{what}: cannot run {argv[0]}", cause=str(exc), hint=hint) from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise OperationFailed(
            f"{what} failed ({argv[0]} exited with {done.returncode})",
            cause=tail[-1] if tail else None,
            hint=hint,
            original="\n".join(tail),
        )
    return done.stdout


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise builders sharing a cache directory (parallel test workers, two CLI runs)."""
    with (directory / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
