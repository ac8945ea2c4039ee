"""Which project a caller's request acts in, and the checks of what its body names (the VM, network and volume
routes' own checks are in :mod:`kvmhub.server.auth`)."""

from __future__ import annotations

from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import DEFAULT_PROJECT
from kvmhub.server.auth import Principal
from kvmhub.services import projects
from kvmhub.services.storage import volumes


def project_for(caller: Principal, wanted: str | None) -> str:
    """The project a create, clone or import acts in: the one named (404 ``project.not_found`` when the caller
    is not in it or it does not exist), else the caller's only project, else ``default``."""
    if wanted is None:
        mine = sorted(caller.projects) if caller.projects is not None else []
        wanted = mine[0] if len(mine) == 1 else DEFAULT_PROJECT
    if not caller.sees(wanted):
        raise projects.not_found(wanted)
    return projects.resolve(wanted)


def visible_project(caller: Principal, name: str) -> str:
    """``name`` when the caller may see the project; 404 ``project.not_found`` otherwise (existing or not)."""
    if not caller.sees(name):
        raise projects.not_found(name)
    return name


def visible_network(hv: Hypervisor, caller: Principal, name: str | None) -> None:
    """404 ``network.not_found`` when a request names a network the caller may not see (or none exists)."""
    if name is not None and not caller.sees(projects.network_project(hv, name)):
        raise projects.network_not_found(name)


def visible_vm(hv: Hypervisor, caller: Principal, name: str) -> None:
    """404 ``vm.not_found`` when a request's body names a VM the caller may not see, as for a missing one."""
    if caller.projects is not None and not caller.sees(projects.vm_project(hv, name)):
        raise projects.vm_not_found(name)


def visible_volume(hv: Hypervisor, caller: Principal, ref: str | None) -> None:
    """404 ``volume.not_found`` when a request's body names a volume (POOL/VOL) the caller may not see, in the
    words a missing one gets."""
    if ref is None or caller.projects is None:
        return
    info = volumes.show_volume(hv, ref)  # a missing one raises its own NotFound
    if not caller.sees(info.project):
        raise hv_storage.volume_not_found(info.pool, info.name)
