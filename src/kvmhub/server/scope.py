"""Which project a caller's request acts in (the VM routes' own check is ``auth._vm_visible``)."""

from __future__ import annotations

from kvmhub.models import DEFAULT_PROJECT
from kvmhub.server.auth import Principal
from kvmhub.services import projects


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
