"""``/users`` and ``/tokens``: the server's accounts (admins) and API tokens (admins, or users for themselves)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from kvmhub.server import accounts
from kvmhub.server.accounts import NewToken, Role, TokenInfo, UserInfo, at_least
from kvmhub.server.auth import ADMIN, VIEWER, Caller

router = APIRouter(tags=["accounts"])
UserName = Annotated[str, Path(min_length=1, max_length=64, description="the user's name")]
TokenId = Annotated[str, Path(pattern=accounts.ID_PATTERN, description="the token's id (not its secret)")]


class NewUser(BaseModel):
    """A user to make."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    role: Role
    password: str = Field(min_length=accounts.PASSWORD_MIN, max_length=accounts.PASSWORD_MAX)


class TokenRequest(BaseModel):
    """A token to make: its role (at most the user's; default the user's), project and lifetime."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    project: str | None = Field(default=None, min_length=1, max_length=64)
    expires_in: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, description="seconds")
    description: str = Field(default="", max_length=accounts.DESCRIPTION_MAX)


@router.get("/users", response_model=list[UserInfo], dependencies=[ADMIN])
def list_users() -> list[UserInfo]:
    """Every user with its role."""
    return accounts.list_users()


@router.post("/users", response_model=UserInfo, status_code=201, dependencies=[ADMIN])
def create_user(user: NewUser) -> UserInfo:
    """Make a user (409 ``name.taken`` when the name is in use)."""
    return accounts.add_user(user.name, user.role, user.password)


@router.get("/users/{name}", response_model=UserInfo, dependencies=[ADMIN])
def show_user(name: UserName) -> UserInfo:
    """One user."""
    return accounts.get_user(name)


@router.delete("/users/{name}", status_code=204, dependencies=[ADMIN])
def remove_user(name: UserName) -> Response:
    """Remove a user; its tokens and sessions end with it."""
    accounts.remove_user(name)
    return Response(status_code=204)


@router.post("/users/{name}/tokens", response_model=NewToken, status_code=201, dependencies=[VIEWER])
def create_token(name: UserName, caller: Caller,
                 request: Annotated[TokenRequest | None, Body()] = None) -> NewToken:
    """Make an API token for a user (admins: anyone; others: themselves). Its secret is in this answer only.

    A token never acts above the caller: one made with a token restricted to a lower role or a project is
    restricted the same way."""
    wanted = request or TokenRequest()
    if caller.role is not Role.ADMIN and caller.name != name:
        raise HTTPException(403, f"{caller.name} is {caller.role}; making tokens for others needs admin")
    role = wanted.role
    if caller.name == name and not at_least(caller.role, role or caller.role):
        raise HTTPException(403, f"{caller.name} acts as {caller.role} here and cannot make a {role} token")
    if caller.name == name and role is None and caller.role is not accounts.get_user(name).role:
        role = caller.role
    if caller.project is not None and wanted.project not in (None, caller.project):
        raise HTTPException(403, f"this token is restricted to project {caller.project!r}")
    return accounts.add_token(name, role=role, project=wanted.project or caller.project,
                              expires_in=wanted.expires_in, description=wanted.description)


@router.get("/tokens", response_model=list[TokenInfo], dependencies=[VIEWER])
def list_tokens(caller: Caller, user: Annotated[str | None, Query(max_length=64)] = None) -> list[TokenInfo]:
    """API tokens without their secrets: an admin's listing holds everyone's (or ``user``'s), others' their own."""
    if caller.role is not Role.ADMIN:
        return accounts.list_tokens(caller.name)
    return accounts.list_tokens(user)


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[VIEWER])
def remove_token(token_id: TokenId, caller: Caller) -> Response:
    """Revoke a token (admins: any; others: their own). It is refused from the next request on."""
    accounts.remove_token(token_id, user=None if caller.role is Role.ADMIN else caller.name)
    return Response(status_code=204)
