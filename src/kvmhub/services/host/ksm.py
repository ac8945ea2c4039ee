"""Kernel same-page merging (KSM): its state and savings, and `kvmhub host setup --ksm on|off`.

State and counters are read from ``/sys/kernel/mm/ksm`` when the host is this machine; for a remote host
the page counters come from libvirt's node memory parameters and the on/off state is unknown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kvmhub.errors import HostProblem, InvalidInput
from kvmhub.models.stats import KsmStats

KSM_DIR = "/sys/kernel/mm/ksm"
_STATES = {"0": "off", "1": "on", "2": "unmerge"}
_MISSING = "the kernel has no KSM (/sys/kernel/mm/ksm missing: built without CONFIG_KSM)"


def ksm_dir(root: str = "") -> Path:
    """Where KSM's sysfs files are, seen from here (`root` is the host's file-system root)."""
    return Path(root + KSM_DIR)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _saved_mib(pages_sharing: int | None) -> float | None:
    if pages_sharing is None:
        return None
    return round(pages_sharing * os.sysconf("SC_PAGE_SIZE") / 1024**2, 1)


def read_local(root: str = "") -> KsmStats:
    """KSM as this kernel reports it under `root`/sys/kernel/mm/ksm."""
    base = ksm_dir(root)
    if not base.is_dir():
        return KsmStats(available=False, reason=_MISSING)
    run = _read_int(base / "run")
    sharing = _read_int(base / "pages_sharing")
    return KsmStats(
        available=True,
        state=_STATES.get(str(run), None if run is None else str(run)),
        pages_shared=_read_int(base / "pages_shared"),
        pages_sharing=sharing,
        pages_unshared=_read_int(base / "pages_unshared"),
        full_scans=_read_int(base / "full_scans"),
        saved_mib=_saved_mib(sharing),
    )


def from_libvirt(params: Mapping[str, int]) -> KsmStats:
    """KSM from libvirt's node memory parameters (shm_*), for hosts whose /sys kvmhub cannot read."""
    if "shm_pages_shared" not in params:
        return KsmStats(available=False, reason="libvirt reports no KSM parameters for this host")
    sharing = params.get("shm_pages_sharing")
    return KsmStats(
        available=True,
        reason="state unknown: the host is remote (its /sys is not readable from here)",
        pages_shared=params.get("shm_pages_shared"),
        pages_sharing=sharing,
        pages_unshared=params.get("shm_pages_unshared"),
        full_scans=params.get("shm_full_scans"),
        saved_mib=_saved_mib(sharing),
    )


def set_state(state: str, root: str = "") -> KsmStats:
    """Switch KSM on (merge) or off (stop merging, keep merged pages), then report it.

    Raises InvalidInput for a state other than on/off, HostProblem when the kernel has no KSM or the
    file cannot be written (not root).
    """
    codes = {"on": "1", "off": "0"}
    if state not in codes:
        raise InvalidInput(f"KSM state {state!r} is not on or off", hint="{cmd:host setup --ksm on} (or off)")
    base = ksm_dir(root)
    if not base.is_dir():
        raise HostProblem(
            "KSM is not available on this host",
            cause=_MISSING,
            hint="use a kernel built with CONFIG_KSM=y (Debian's stock kernels have it)",
        )
    try:
        (base / "run").write_text(codes[state] + "\n")
    except OSError as exc:
        raise HostProblem(
            f"could not switch KSM {state}",
            cause=f"writing {base / 'run'} failed: {exc.strerror}",
            hint="run it as root on the host itself",
        ) from None
    return read_local(root)
