"""Who is asking: the principal behind each request, and what its role lets it do.

Local callers on the unix socket passed its file permissions (root or group ``kvmhub``) and act as admin. TCP
callers must present credentials (``Authorization: Bearer TOKEN``); until accounts exist on this host every TCP
request is refused with 401.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from kvmhub.server.transport import transport_of


class Role(enum.StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Principal(BaseModel):
    """The user (or token) a request acts as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    role: Role
    project: str | None = None  # a token restricted to one project


LOCAL = Principal(name="local", role=Role.ADMIN)


def principal(conn: HTTPConnection) -> Principal:
    """The caller of a request or WebSocket: the local admin on the unix socket; on TCP, whoever its credentials
    name (401 otherwise)."""
    if transport_of(conn) == "unix":
        return LOCAL
    raise HTTPException(401, "credentials required: send Authorization: Bearer TOKEN",
                        headers={"WWW-Authenticate": "Bearer"})


Caller = Annotated[Principal, Depends(principal)]

_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def require(role: Role) -> Callable[[Principal], Principal]:
    """A dependency letting through callers of ``role`` or above (403 naming the role otherwise)."""
    def check(caller: Caller) -> Principal:
        if _RANK[caller.role] < _RANK[role]:
            raise HTTPException(403, f"{caller.name} is {caller.role}; this needs {role}")
        return caller

    return check


# what routes declare: reads need a viewer, changes an operator, accounts an admin
VIEWER = Depends(require(Role.VIEWER))
OPERATOR = Depends(require(Role.OPERATOR))
ADMIN = Depends(require(Role.ADMIN))
