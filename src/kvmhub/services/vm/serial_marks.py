"""The marks the VMs kvmhub makes print on their serial console, and a VM's phase judged from them without asking
the guest. No pydantic model is loaded here: `kvmhub ls`'s fast path judges phases too."""

from __future__ import annotations

from kvmhub.models.plain import Phase

SERIAL_LOG_DIR = "/var/log/libvirt/qemu"  # where the VMs kvmhub makes log their serial console
MARK_BOOTED = "KVMHUB-BOOTED"
MARK_NETWORK = "KVMHUB-NETWORK"
MARK_READY = "KVMHUB-READY"
LOG_TAIL = 64 * 1024


def read_log_or_none(path: str | None, limit: int = LOG_TAIL) -> str | None:
    """The last ``limit`` bytes of the serial log, None when there is no such file."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def quick_phase(log_text: str | None, leased: bool) -> Phase:
    """A running VM's phase judged without asking the guest, from its serial log (None: it has none kvmhub
    reads) and whether it has a DHCP lease. A lease counts once the log says booted, or for a VM without such a
    log; it may be left from an earlier boot: this is the listing's cheap guess, ``readiness.current_phase``
    decides."""
    if log_text is None:
        return Phase.NETWORK if leased else Phase.RUNNING
    if MARK_READY in log_text:
        return Phase.READY
    if MARK_BOOTED not in log_text:
        return Phase.RUNNING
    return Phase.NETWORK if leased or MARK_NETWORK in log_text else Phase.BOOTED
