"""The rows of a VM listing as plain dicts: :func:`kvmhub.services.vm.lifecycle.list_vms` makes its VMInfo of them,
and `kvmhub ls`'s fast path prints them without loading pydantic.

A row holds VMInfo's listing fields (name, uuid, state, phase, persistent, autostart, vcpus, memory_mib,
domain_type, ips, project); :func:`as_json` gives the rest their defaults, as ``VMInfo.model_dump`` does.
"""

from __future__ import annotations

from typing import Any

from kvmhub.errors import NotFound
from kvmhub.hv import Hypervisor, host_root, is_local_uri
from kvmhub.hv import domains as hv_domains
from kvmhub.models.plain import DEFAULT_PROJECT, Phase
from kvmhub.services import owners
from kvmhub.services.vm.serial_marks import SERIAL_LOG_DIR, quick_phase, read_log_or_none

Row = dict[str, Any]

# VMInfo's fields in its order, with the defaults of those a listing leaves unset (tests hold this to the model)
_DUMPED: Row = {
    "name": None, "uuid": None, "state": None, "phase": None, "persistent": None, "autostart": None, "vcpus": None,
    "memory_mib": None, "domain_type": None, "machine": None, "ips": None, "image": None, "os": None, "disks": [],
    "nics": [], "serial_log": None, "vnc": None, "boot": None, "managed": False, "project": None, "limits": None,
    "user": None, "tpm": None, "firmware": "bios", "secure_boot": False,
}  # fmt: skip


def rows(hv: Hypervisor) -> list[Row]:
    """Every VM on the host, in a constant number of libvirt calls plus one per running VM (for IPs). The phase
    of a running VM is judged from its lease and the serial log kvmhub gives the VMs it makes (never the guest
    agent, which may take seconds to answer): `show` asks the guest."""
    stats = hv_domains.bulk_stats(hv)
    flags = hv_domains.listing_flags(hv)
    projects = owners.owners(hv, flags.transient)
    logs = serial_logs(hv)
    return sorted((_row(hv, s, logs, persistent=s.name not in flags.transient, autostart=s.name in flags.autostart,
                        project=projects.get(s.name, DEFAULT_PROJECT))
                   for s in stats), key=lambda r: str(r["name"]))


def row(hv: Hypervisor, name: str) -> Row | None:
    """VM ``name``'s row as :func:`rows` makes it, in a few calls; None when there is no such VM."""
    try:
        dom = hv_domains.lookup(hv, name)
        stats = hv_domains.stats_of(hv, dom)
        persistent, autostart = dom.is_persistent(), dom.autostart()
    except NotFound:
        return None
    return _row(hv, stats, serial_logs(hv), persistent=persistent, autostart=autostart,
                project=owners.owner(hv, dom, transient=not persistent), dom=dom)


def serial_logs(hv: Hypervisor) -> str | None:
    """Where the serial logs of kvmhub's VMs are seen from here; None when the host's files are not."""
    return host_root() + SERIAL_LOG_DIR if is_local_uri(hv.uri) else None


def as_json(found: Row) -> Row:
    """A row with every field of VMInfo, as ``VMInfo.model_dump(mode="json")`` gives it."""
    out = dict(_DUMPED)
    out.update(found)
    out["phase"] = str(found["phase"])
    return out


def _row(hv: Hypervisor, stats: hv_domains.DomainStats, logs: str | None, *, persistent: bool, autostart: bool,
         project: str, dom: hv_domains.Domain | None = None) -> Row:
    ips: list[str] = []
    phase = Phase.DEFINED
    if stats.state in ("running", "paused"):
        dom = dom or hv_domains.Domain(hv, stats.handle)
        ips = [a.ip for a in dom.addresses("lease")]
        log_text = read_log_or_none(f"{logs}/{stats.name}-serial.log" if logs is not None else None)
        phase = quick_phase(log_text, bool(ips))
    return {"name": stats.name, "uuid": stats.uuid, "state": stats.state, "phase": phase, "persistent": persistent,
            "autostart": autostart, "vcpus": stats.vcpus or 0, "memory_mib": (stats.memory_kib or 0) // 1024,
            "domain_type": "", "ips": ips, "project": project}
