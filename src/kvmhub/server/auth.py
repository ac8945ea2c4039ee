"""Who is asking: the principal behind each request, and what its role lets it do.

Local callers on the unix socket passed its file permissions (root or group ``kvmhub``) and act as admin. TCP
callers present an API token (``Authorization: Bearer TOKEN``) or a browser session's cookie; a change made with
the cookie must also carry the session's CSRF token (``X-CSRF-Token``), which a bearer token needs not. Missing
credentials answer 401 ``auth.required``; wrong, revoked or expired ones 401 ``auth.invalid``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from pydantic import BaseModel, ConfigDict, field_serializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.server import accounts
from kvmhub.server.accounts import LOCAL_NAME, Role, at_least
from kvmhub.server.transport import transport_of
from kvmhub.services import projects
from kvmhub.services.storage import volumes

__all__ = ["ADMIN", "LOCAL", "OPERATOR", "VIEWER", "Caller", "Principal", "Role", "principal", "require"]

SESSION_COOKIE = "kvmhub_session"
CSRF_HEADER = "X-CSRF-Token"
API_PREFIX = "/api/v1"
VM_PATH = "/vms/{name}"  # the routes whose VM the caller must be allowed to see
NETWORK_PATH = "/networks/{name}"  # the routes whose network the caller must be allowed to see
VOLUME_PATH = "/pools/{pool}/volumes/{name}"  # the routes whose volume the caller must be allowed to see
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CALLER_KEY = "kvmhub.caller"  # a dict the audit middleware puts in the scope; principal() names the caller in it


class Principal(BaseModel):
    """The user (or token) a request acts as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    project: str | None = None  # a token restricted to one project
    projects: frozenset[str] | None = None  # the projects it may act in; None: all (an admin)

    @field_serializer("projects")
    def _sorted(self, value: frozenset[str] | None) -> list[str] | None:
        return None if value is None else sorted(value)

    def sees(self, project: str) -> bool:
        """True when the caller may see and act on what ``project`` owns."""
        return self.projects is None or project in self.projects


LOCAL = Principal(name=LOCAL_NAME, role=Role.ADMIN)


async def principal(conn: HTTPConnection) -> Principal:
    """The caller of a request or WebSocket: the local admin on the unix socket; on TCP, whoever its token or
    session names (401 otherwise)."""
    # the account database is read on a worker thread; the unix socket's caller costs no thread hop at all
    who = LOCAL if transport_of(conn) == "unix" else await run_in_threadpool(_from_credentials, conn)
    note_caller(conn, who.name, who.role)
    return who


def note_caller(conn: HTTPConnection, name: str, role: Role | None = None) -> None:
    """Tell the audit log who the request acts as (or, for a login, whom it tried to be)."""
    holder: Any = conn.scope.get(CALLER_KEY)
    if isinstance(holder, dict):
        holder.update(user=name, role=role)


def _from_credentials(conn: HTTPConnection) -> Principal:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _required("the Authorization header is not Bearer TOKEN")
        grant = accounts.resolve_token(value.strip())
    elif (cookie := conn.cookies.get(SESSION_COOKIE)) is not None:
        grant = accounts.resolve_session(cookie, conn.headers.get(CSRF_HEADER),
                                         mutating=conn.scope.get("method", "GET") in MUTATING)
    else:
        raise _required("credentials required")
    return Principal(name=grant.user, role=grant.role, project=grant.project,
                     projects=_projects_of(grant.user, grant.role, grant.project))


def _projects_of(user: str, role: Role, restricted: str | None) -> frozenset[str] | None:
    """An admin's: all (or the one its token is restricted to); others': those they are members of (and of those,
    the token's)."""
    if role is Role.ADMIN:
        return None if restricted is None else frozenset({restricted})
    member = frozenset(projects.member_of(user))
    if restricted is None:
        return member
    if restricted in member or accounts.get_user(user).role is Role.ADMIN:  # an admin's token of a lower role
        return frozenset({restricted})
    return frozenset()


def _required(why: str) -> HTTPException:
    return HTTPException(401, f"{why}: send Authorization: Bearer TOKEN, or log in with POST /api/v1/session",
                         headers={"WWW-Authenticate": "Bearer"})


Caller = Annotated[Principal, Depends(principal)]


def require(role: Role) -> Callable[[HTTPConnection, Principal], Awaitable[Principal]]:
    """A dependency letting through callers of ``role`` or above (403 naming the role otherwise)."""
    async def check(conn: HTTPConnection, caller: Caller) -> Principal:
        if not at_least(caller.role, role):
            raise HTTPException(403, f"{caller.name} is {caller.role}; this needs {role}")
        if caller.projects is not None:  # looking up whose a VM or network is asks libvirt: a worker thread
            await run_in_threadpool(_visible, conn, caller)
        return caller

    return check


def _visible(conn: HTTPConnection, caller: Principal) -> None:
    _vm_visible(conn, caller)
    _network_visible(conn, caller)
    _volume_visible(conn, caller)


def _on_route(conn: HTTPConnection, caller: Principal, prefix: str) -> str | None:
    """The ``{name}`` of a route under ``prefix`` when the caller is limited to some projects, else None."""
    if caller.projects is None:
        return None
    path = str(getattr(conn.scope.get("route"), "path", "")).removeprefix(API_PREFIX)  # some versions keep it
    if not (path == prefix or path.startswith(prefix + "/")):
        return None
    return str(conn.path_params.get("name", ""))


def _vm_visible(conn: HTTPConnection, caller: Principal) -> None:
    """On a ``/vms/{name}...`` route, 404 ``vm.not_found`` unless the VM belongs to one of the caller's projects:
    another project's VM answers exactly as a missing one does, so nothing of it leaks."""
    if (name := _on_route(conn, caller, VM_PATH)) is None:
        return
    hv: Hypervisor = conn.app.state.hv
    if not caller.sees(projects.vm_project(hv, name)):
        raise projects.vm_not_found(name)


def _network_visible(conn: HTTPConnection, caller: Principal) -> None:
    """On a ``/networks/{name}...`` route, 404 ``network.not_found`` unless the network belongs to one of the
    caller's projects, exactly as a missing one answers."""
    if (name := _on_route(conn, caller, NETWORK_PATH)) is None:
        return
    hv: Hypervisor = conn.app.state.hv
    if not caller.sees(projects.network_project(hv, name)):
        raise projects.network_not_found(name)


def _volume_visible(conn: HTTPConnection, caller: Principal) -> None:
    """On a ``/pools/{pool}/volumes/{name}...`` route, 404 ``volume.not_found`` unless the volume belongs to one of
    the caller's projects, exactly as a missing one answers."""
    if _on_route(conn, caller, VOLUME_PATH) is None:
        return
    hv: Hypervisor = conn.app.state.hv
    pool, name = str(conn.path_params.get("pool", "")), str(conn.path_params.get("name", ""))
    if not caller.sees(volumes.show_volume(hv, f"{pool}/{name}").project):
        raise hv_storage.volume_not_found(pool, name)


# what routes declare: reads need a viewer, changes an operator, accounts an admin
VIEWER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR))
ADMIN = Depends(require(Role.ADMIN))


def admin_for_host_paths(caller: Principal, what: str, *paths: str | None) -> None:
    """Refuse (403) a non-admin whose request names files or directories on the server's host: the server runs
    as root, so only an admin may point it at host paths; others upload a volume and name that."""
    if caller.role is not Role.ADMIN and any(p is not None for p in paths):
        raise HTTPException(403, f"{caller.name} is {caller.role}; {what} on the server's host needs admin "
                                 "(upload it as a volume and name the volume instead)")
