"""``/projects``: projects with their quotas, use and members (admins change them; members read their own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from kvmhub.models import MemberRequest, ProjectInfo, ProjectQuota, ProjectRequest
from kvmhub.server.auth import ADMIN, VIEWER, Caller
from kvmhub.server.deps import Hv
from kvmhub.server.scope import visible_project
from kvmhub.services import projects

router = APIRouter(prefix="/projects", tags=["projects"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the project's name")]
User = Annotated[str, Path(min_length=1, max_length=64, description="the user's name")]


@router.get("", response_model=list[ProjectInfo], dependencies=[VIEWER])
def list_projects(hv: Hv, caller: Caller) -> list[ProjectInfo]:
    """The projects the caller may act in (an admin: all), with their quotas, members and use."""
    return projects.list_projects(hv, only=caller.projects)


@router.post("", response_model=ProjectInfo, status_code=201, dependencies=[ADMIN])
def create_project(req: ProjectRequest) -> ProjectInfo:
    """Make a project with its quotas (409 ``name.taken`` when the name is in use)."""
    return projects.create_project(req)


@router.get("/{name}", response_model=ProjectInfo, dependencies=[VIEWER])
def show_project(name: Name, hv: Hv, caller: Caller) -> ProjectInfo:
    """One project with its quotas, members and current use (404 when the caller is not in it)."""
    return projects.get_project(visible_project(caller, name), hv)


@router.patch("/{name}", response_model=ProjectInfo, dependencies=[ADMIN])
def set_quota(name: Name, quota: ProjectQuota) -> ProjectInfo:
    """Change the quotas the body names (null: unlimited); the others stay."""
    return projects.set_quota(name, quota)


@router.delete("/{name}", status_code=204, dependencies=[ADMIN])
def remove_project(name: Name, hv: Hv) -> Response:
    """Remove a project; refused (409 ``project.not_empty``) while it owns VMs, and for ``default``."""
    projects.remove_project(hv, name)
    return Response(status_code=204)


@router.post("/{name}/members", response_model=ProjectInfo, dependencies=[ADMIN])
def add_member(name: Name, member: MemberRequest) -> ProjectInfo:
    """Let a user act in the project."""
    return projects.add_member(name, member.user)


@router.delete("/{name}/members/{user}", response_model=ProjectInfo, dependencies=[ADMIN])
def remove_member(name: Name, user: User) -> ProjectInfo:
    """Take a user out of the project."""
    return projects.remove_member(name, user)
