"""``/session``: browser log-in and log-out with an HttpOnly, SameSite=Strict cookie and a CSRF token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.server.auth import CSRF_HEADER, SESSION_COOKIE, VIEWER, Caller, Principal, note_caller

router = APIRouter(prefix="/session", tags=["session"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=accounts.PASSWORD_MAX)


class SessionInfo(BaseModel):
    """A session just opened. ``csrf_token`` goes in the ``X-CSRF-Token`` header of every change it makes."""

    model_config = ConfigDict(extra="forbid")

    user: str
    role: Role
    csrf_token: str
    csrf_header: str = CSRF_HEADER
    expires: float


@router.post("", response_model=SessionInfo)
def log_in(login: Login, request: Request, response: Response) -> SessionInfo:
    """Log in with a user's password: sets the session cookie and answers the session's CSRF token.

    Wrong passwords answer 401 ``auth.invalid``; after several in a row the user is locked out for a while
    (429 ``auth.throttled``)."""
    note_caller(request, login.user)
    grant = accounts.login(login.user, login.password)
    note_caller(request, grant.user, grant.role)
    session = accounts.open_session(grant.user)
    response.set_cookie(SESSION_COOKIE, session.cookie, max_age=int(accounts.SESSION_S), path="/api/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return SessionInfo(user=grant.user, role=grant.role, csrf_token=session.csrf, expires=session.expires)


@router.get("", response_model=Principal, dependencies=[VIEWER])
def who_am_i(caller: Caller) -> Principal:
    """Whom the request's credentials name, with the role and project it acts with."""
    return caller


@router.delete("", status_code=204, dependencies=[VIEWER])
def log_out(request: Request) -> Response:
    """End the browser session (a change like any other: it needs the CSRF token)."""
    if (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        accounts.close_session(cookie)
    answer = Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/api/", httponly=True, samesite="strict")
    return answer
