"""Which accelerator guests get: KVM where a real probe boot works, TCG emulation otherwise.

`/dev/kvm` existing is not proof: on some hosts (nested or paravirtualized KVM) it opens fine but a
normal kernel hangs under it. So kvmhub boots a tiny kernel under `-accel kvm` with a short timeout
and trusts only a marker printed by that kernel's init. The answer is cached per host setup.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from kvmhub.errors import KvmhubError
from kvmhub.tools.tiny.build import build_probe_initramfs

Accel = Literal["kvm", "tcg"]

STATE_DIR = Path(os.environ.get("KVMHUB_STATE_DIR", "/var/lib/kvmhub"))
CACHE_FILE = STATE_DIR / "accel.json"
PROBE_MARKER = b"KVMHUB-PROBE-OK"
PROBE_TIMEOUT = 20.0
TCG_WARNING = "KVM unusable, using TCG emulation: guests will be slower"


@dataclass
class ProbeResult:
    accelerator: Accel
    detail: str
    seconds: float
    fingerprint: str = ""


def _qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


def _fingerprint() -> str:
    """What the cached answer depends on: the QEMU binary and /dev/kvm's identity and mode."""
    parts = []
    qemu = _qemu_binary()
    if qemu:
        st = os.stat(qemu)
        parts.append(f"{qemu}:{st.st_size}:{int(st.st_mtime)}")
    try:
        st = os.stat("/dev/kvm")
        parts.append(f"kvm:{st.st_rdev}:{st.st_mode:o}:{st.st_gid}")
    except OSError:
        parts.append("kvm:none")
    with open("/proc/sys/kernel/osrelease") as fh:
        parts.append(fh.read().strip())
    return "|".join(parts)


def boot_probe(accel: str, kernel: Path, initrd: Path, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot `kernel` under `accel`; True when its init printed the probe marker in time."""
    qemu = _qemu_binary()
    if not qemu:
        return False, "qemu-system-x86_64 is not installed"
    argv = [
        qemu, "-accel", accel, "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
        "-no-reboot", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen = (seen + chunk)[-65536:]
                if PROBE_MARKER in seen:
                    return True, "a test kernel booted"
        if proc.poll() is not None:
            tail = seen.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return False, f"QEMU exited ({proc.returncode}): {tail[0]}"
        return False, f"a test kernel did not boot within {timeout:.0f} s (it hangs under this accelerator)"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def probe(timeout: float = PROBE_TIMEOUT) -> ProbeResult:
    """Decide KVM or TCG for this machine by booting a tiny kernel under KVM. Never hangs."""

    start = time.monotonic()
    fp = _fingerprint()
    if not os.path.exists("/dev/kvm"):
        return ProbeResult("tcg", "/dev/kvm does not exist (no KVM module, or no virtualization)", 0.0, fp)
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return ProbeResult("tcg", f"/dev/kvm cannot be opened: {exc.strerror}", 0.0, fp)
    try:
        kernel, initrd = build_probe_initramfs(STATE_DIR / "probe")
    except KvmhubError as exc:
        return ProbeResult("tcg", f"no probe kernel available ({exc.message}); assuming TCG", 0.0, fp)
    ok, detail = boot_probe("kvm", kernel, initrd, timeout)
    elapsed = time.monotonic() - start
    if ok:
        return ProbeResult("kvm", f"KVM works: {detail} in {elapsed:.1f} s", elapsed, fp)
    return ProbeResult("tcg", f"KVM unusable: {detail}", elapsed, fp)


def cached() -> ProbeResult | None:
    try:
        data = json.loads(CACHE_FILE.read_text())
        result = ProbeResult(**data)
    except (OSError, ValueError, TypeError):
        return None
    return result if result.fingerprint == _fingerprint() else None


def save(result: ProbeResult) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(result)))
    tmp.replace(CACHE_FILE)


def accelerator(*, refresh: bool = False) -> ProbeResult:
    """The accelerator for guests on this machine ($KVMHUB_ACCEL=kvm|tcg overrides the probe)."""
    forced = os.environ.get("KVMHUB_ACCEL")
    if forced in ("kvm", "tcg"):
        return ProbeResult(forced, f"set by KVMHUB_ACCEL={forced}", 0.0)  # type: ignore[arg-type]
    if not refresh:
        hit = cached()
        if hit is not None:
            return hit
    result = probe()
    try:
        save(result)
    except OSError:
        pass  # not root: probe again next time
    return result


def domain_type(accel: Accel) -> Literal["kvm", "qemu"]:
    return "kvm" if accel == "kvm" else "qemu"
