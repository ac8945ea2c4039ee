"""Hints read by an API client name what it can send: the request doing what a CLI command does (its flags as
the body's fields), or, where no request does it, the command to run on the server's host."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.errors import API_COMMANDS, InvalidInput, render

SRC = Path(__file__).resolve().parents[2] / "src" / "kvmhub"
TERM = re.compile(r"\{cmd:([^{}\n]+)\}")
REQUEST = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) /api/v1(/[^`?]*)(\?[^`]*)?`")


def _routes(app: FastAPI) -> list[tuple[str, re.Pattern[str]]]:
    """Each operation of the app's OpenAPI as (method, a pattern its concrete paths match)."""
    found: list[tuple[str, re.Pattern[str]]] = []
    for path, item in app.openapi()["paths"].items():
        pattern = re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(path)) + "$")
        found.extend((method.upper(), pattern) for method in item)
    return found


def _served(routes: list[tuple[str, re.Pattern[str]]], method: str, path: str) -> bool:
    return any(m == method and p.match(path) for m, p in routes)


def test_every_request_a_command_stands_for_is_a_route_of_the_api(app: FastAPI) -> None:
    routes = _routes(app)
    for command, request in API_COMMANDS.items():
        method, path = request.split(" ", 1)
        assert _served(routes, method, "/api/v1" + path), f"{command}: {request} is no route of the API"


def test_every_command_named_in_a_message_reads_as_a_route_or_a_command_for_the_api(app: FastAPI) -> None:
    routes = _routes(app)
    terms = {t for f in SRC.rglob("*.py") for t in TERM.findall(f.read_text()) if t != "..."}
    assert len(terms) > 30
    as_requests = 0
    for term in sorted(terms):
        said = render(f"{{cmd:{term}}}", "api")
        if said == f"`kvmhub {term}`":
            continue  # no request does it: run on the server's host
        request = REQUEST.search(said)
        assert request is not None, f"{term!r} reads {said!r}"
        assert _served(routes, request.group(1), "/api/v1" + request.group(2)), f"{term!r} reads {said!r}"
        as_requests += 1
    assert as_requests > 20


def test_flags_become_the_body_or_the_query_and_missing_words_the_routes_parameters() -> None:
    assert render("{cmd:set NAME --memory-limit none}", "api") == \
        '`PATCH /api/v1/vms/NAME` with `{"memory_limit": "none"}`'
    assert render("{cmd:backup ls web --dir /srv/b}", "api") == "`GET /api/v1/vms/web/backups?dir=/srv/b`"
    assert render("{cmd:vol rm POOL/VOL}", "api") == "`DELETE /api/v1/pools/POOL/volumes/VOL`"
    assert render("{cmd:vol ls}", "api") == "`GET /api/v1/pools/{pool}/volumes`"
    assert render("{cmd:set --help}", "api") == "the schema of `PATCH /api/v1/vms/{name}` at /docs"
    assert render("{cmd:host setup --ksm on}", "api") == "`kvmhub host setup --ksm on`"
    err = InvalidInput("bad {opt:max_cpus}", hint="see {cmd:net lease ls lab} and {cmd:repair --yes}")
    assert err.to_dict("api")["hint"] == "see `GET /api/v1/networks/lab/leases` and `kvmhub repair --yes`"
    assert err.hint == "see `kvmhub net lease ls lab` and `kvmhub repair --yes`"  # the CLI's reading is unchanged


def test_a_missing_vm_tells_an_api_client_the_request_that_lists_them(client: TestClient) -> None:
    body = client.get("/api/v1/vms/nope").json()
    assert body["hint"] == "list them: `GET /api/v1/vms`"
    assert body["terms"]["hint"] == "list them: {cmd:ls}"  # what a CLI client phrases in its own words
