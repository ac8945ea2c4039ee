"""Where templates live on a host: a state file and a record per template, and a base volume in the disks pool.

``/var/lib/libvirt/kvmhub/templates/NAME.save`` is the saved memory (a libvirt save image) and ``NAME.json``
its :class:`TemplateRecord`; the base is the volume ``template-NAME.qcow2`` beside the VMs' disks. The files are
reached through the host's root (:func:`kvmhub.hv.host_root`), so templates need a host whose files kvmhub sees.
"""

from __future__ import annotations

import contextlib
import os

from pydantic import ValidationError

from kvmhub.errors import Conflict, HostProblem, KvmhubError, NotFound
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import storage as hv_storage
from kvmhub.models.template import TemplateInfo, TemplateRecord
from kvmhub.services.storage import usage
from kvmhub.validate import check_name

TEMPLATES_DIR = "/var/lib/libvirt/kvmhub/templates"


def base_volume(name: str) -> str:
    """The base volume of template ``name`` in the disks pool."""
    return f"template-{name}.qcow2"


def state_path(name: str) -> str:
    """The state file of template ``name`` on the host."""
    return f"{TEMPLATES_DIR}/{name}.save"


def record_path(name: str) -> str:
    """The record of template ``name`` on the host."""
    return f"{TEMPLATES_DIR}/{name}.json"


def seen(path: str) -> str:
    """A host path as this process reaches it."""
    return host_root() + path


def require_local(hv: Hypervisor) -> None:
    """Refuse a host whose files kvmhub does not reach: a template's state is a file kvmhub edits."""
    if not host_files_here(hv.uri):
        raise HostProblem(f"warm templates need a libvirt host whose files kvmhub reaches, not {hv.uri}",
                          cause="each new VM's identity is written into the template's state file on the host",
                          hint="run kvmhub (or its server) on that host", code="hv.unsupported")


def write(record: TemplateRecord) -> None:
    """Write ``record`` (new or replaced) on the host."""
    path = seen(record_path(record.name))
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(record.model_dump_json(indent=1))
    os.replace(tmp, path)


def read(name: str) -> TemplateRecord | None:
    """The record of template ``name``; None when there is none."""
    try:
        with open(seen(record_path(name)), encoding="utf-8") as fh:
            return TemplateRecord.model_validate_json(fh.read())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as exc:
        raise HostProblem(f"the record of template {name} cannot be read", cause=str(exc),
                          hint=f"remove {record_path(name)} and the template's files by hand") from exc


def get(hv: Hypervisor, name: str) -> TemplateRecord:
    """Template ``name``'s record; raises NotFound when there is no such template."""
    check_name(name, "template")
    require_local(hv)
    record = read(name)
    if record is None:
        raise NotFound(f"no template named {name!r}", hint="{cmd:template ls} lists them; "
                       "{cmd:template create NAME --from VM} makes one", code="template.not_found")
    return record


def names() -> list[str]:
    """Every template's name on the host."""
    try:
        entries = os.listdir(seen(TEMPLATES_DIR))
    except FileNotFoundError:
        return []
    return sorted(e.removesuffix(".json") for e in entries if e.endswith(".json"))


def check_free(hv: Hypervisor, name: str, pool: hv_storage.Pool) -> None:
    """Refuse a template name already taken (its record, state file or base volume)."""
    check_name(name, "template")
    if read(name) is not None:
        raise Conflict(f"a template named {name!r} already exists", hint=f"pick another name, or "
                       f"{{cmd:template rm {name}}}", code="name.taken")
    if os.path.lexists(seen(state_path(name))):
        raise Conflict(f"{state_path(name)} already exists", cause="left over from an earlier template",
                       hint="remove it by hand, or pick another name", code="name.taken")
    if pool.has_volume(base_volume(name)):
        raise Conflict(f"volume {base_volume(name)} already exists in pool {pool.name}",
                       hint=f"`virsh vol-delete {base_volume(name)} --pool {pool.name}`, or pick another name",
                       code="name.taken")


def users(hv: Hypervisor, record: TemplateRecord, scan: usage.Usage | None = None) -> list[str]:
    """The VMs whose disks sit on the template's base (its source VM included)."""
    scan = scan or usage.scan(hv)
    return sorted(vm for vm, disks in scan.vms.items() if record.base_path in disks.paths)


def _size(path: str) -> int:
    with contextlib.suppress(OSError):
        return os.stat(seen(path)).st_blocks * 512
    return 0


def info(hv: Hypervisor, record: TemplateRecord, scan: usage.Usage | None = None) -> TemplateInfo:
    """What `template show` reports of ``record``."""
    return TemplateInfo(
        name=record.name, source=record.source, created=record.created, image=record.image, project=record.project,
        vcpus=record.vcpus, memory_mib=record.memory_mib, base=f"{record.base_pool}/{record.base_volume}",
        base_bytes=_size(record.base_path), state_path=record.state_path, state_bytes=_size(record.state_path),
        vms=users(hv, record, scan),
    )


def show(hv: Hypervisor, name: str) -> TemplateInfo:
    """Template ``name`` with its sizes and the VMs made from it; NotFound when there is none."""
    return info(hv, get(hv, name))


def list_templates(hv: Hypervisor) -> list[TemplateInfo]:
    """Every template on the host (one scan of the VMs' disks for all of them)."""
    require_local(hv)
    out = []
    scan = usage.scan(hv)
    for name in names():
        with contextlib.suppress(KvmhubError):
            record = read(name)
            if record is not None:
                out.append(info(hv, record, scan))
    return out

