"""Errors in one place: each error code answers with one HTTP status and one body shape.

Body: ``{"code", "error", "cause", "hint", "detail"}`` — ``error`` is the message, ``cause`` and ``hint`` name the
API's fields and requests (not CLI flags), ``detail`` is what libvirt or validation said.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from kvmhub.errors import KvmhubError, http_status

# codes whose class's status would mislead an API client
_BY_CODE = {
    "libvirt.timeout": 503,  # libvirtd is stalled: the service is unavailable, not the request slow
    "host.libvirtd_unreachable": 503,
    # the driver lacks the function: no retry helps and the server did not fail; the host refuses this request
    "hv.unsupported": 409,
    "lock.timeout": 409,
    "op.cancelled": 409,
    "host.permission_denied": 403,
    "host.access_denied": 403,
    "auth.invalid": 401,
    "auth.throttled": 429,
    "auth.csrf": 403,
    "project.quota_exceeded": 403,
}


class ErrorBody(BaseModel):
    """What every 4xx and 5xx answer carries."""

    model_config = ConfigDict(extra="forbid")

    code: str
    error: str
    cause: str | None = None
    hint: str | None = None
    detail: Any = None
    kind: str | None = None  # the error's kind (InvalidInput, NotFound, Conflict ...)
    terms: dict[str, str | None] | None = None  # message, cause, hint with {opt:}/{cmd:} terms for a CLI client


# what every route declares besides its own answers (422 included: it carries an ErrorBody too)
RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "refused: bad input, not found, conflict, not allowed"},
    "5XX": {"model": ErrorBody, "description": "the host or libvirt failed, or did not answer in time"},
}


def status_of(err: KvmhubError) -> int:
    return _BY_CODE.get(err.code, http_status(err))


def body_of(err: KvmhubError) -> dict[str, Any]:
    data = err.to_dict(front="api")
    return ErrorBody(code=err.code, error=data["message"] or "", cause=data["cause"], hint=data["hint"],
                     detail=err.original, kind=type(err).__name__, terms=err.terms()).model_dump()


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into an :class:`ErrorBody`."""

    @app.exception_handler(KvmhubError)
    async def kvmhub_error(_request: Request, exc: KvmhubError) -> JSONResponse:
        return JSONResponse(body_of(exc), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
                    for e in exc.errors()]
        first = problems[0] if problems else {"where": "body", "problem": "invalid"}
        body = ErrorBody(code="input.invalid", error=f"invalid request: {first['where']}: {first['problem']}",
                         hint="see the request's schema at /docs", detail=problems)
        return JSONResponse(body.model_dump(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "auth.required", 403: "auth.denied", 404: "not_found", 405: "method.not_allowed",
                411: "input.length_required", 413: "input.too_large"}.get(exc.status_code, "failed")
        body = ErrorBody(code=code, error=str(exc.detail))
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=getattr(exc, "headers", None))
