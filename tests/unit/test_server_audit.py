"""The audit log: a row for every mutating API call (refused ones too) and none for reads, readable through
``GET /api/v1/audit`` (admins) and ``kvmhub audit``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.server import accounts, audit
from kvmhub.server.accounts import Role
from kvmhub.server.transport import Marked

URI = "test:///default"
API = "/api/v1"
PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)



@pytest.fixture
def tcp(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(Marked(app, "tcp")) as c:
        yield c


@pytest.fixture
def admin(tcp: TestClient) -> dict[str, str]:
    accounts.add_user("ann", Role.ADMIN, PASSWORD)
    return {"Authorization": f"Bearer {accounts.add_token('ann').secret}"}


def rows(client: TestClient, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    answer = client.get(f"{API}/audit", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def test_mutating_calls_are_audited_with_who_where_what_and_result(tcp: TestClient, admin: dict[str, str]) -> None:
    tcp.get(f"{API}/vms", headers=admin)
    tcp.get(f"{API}/users", headers=admin)
    started = tcp.post(f"{API}/vms/test/pause", headers=admin)
    assert started.status_code == 202
    tcp.get(f"{API}/operations/{started.json()['id']}/wait", headers=admin, params={"timeout": 20})
    tcp.post(f"{API}/users", headers=admin, json={"name": "ben", "role": "viewer", "password": PASSWORD})
    tcp.delete(f"{API}/users/nobody", headers=admin)
    logged = rows(tcp, admin)
    assert [(r["method"], r["path"], r["status"]) for r in logged] == [
        ("POST", f"{API}/vms/test/pause", 202), ("POST", f"{API}/users", 201),
        ("DELETE", f"{API}/users/nobody", 404)]
    pause, made, missing = logged
    assert (pause["user"], pause["role"], pause["transport"]) == ("ann", "admin", "tcp")
    assert (pause["kind"], pause["target"], pause["operation"]) == ("vm.pause", "test", started.json()["id"])
    assert pause["client"] and pause["client"].startswith("testclient:")
    assert (made["kind"], made["operation"]) == ("create_user", None)
    assert (missing["kind"], missing["target"]) == ("remove_user", "nobody")
    assert logged[0]["time"] <= logged[-1]["time"]


def test_refused_calls_are_audited_too(tcp: TestClient, admin: dict[str, str]) -> None:
    accounts.add_user("vic", Role.VIEWER, PASSWORD)
    viewer = {"Authorization": f"Bearer {accounts.add_token('vic').secret}"}
    assert tcp.post(f"{API}/vms/test/kill").status_code == 401
    assert tcp.post(f"{API}/vms/test/kill", headers=viewer).status_code == 403
    assert tcp.post(f"{API}/session", json={"user": "vic", "password": "not the one"}).status_code == 401
    assert tcp.post(f"{API}/vms/test/stop", content=b"x" * (2 << 20), headers=admin).status_code == 413
    logged = [(r["user"], r["role"], r["method"], r["path"], r["status"]) for r in rows(tcp, admin)]
    assert logged == [(None, None, "POST", f"{API}/vms/test/kill", 401),
                      ("vic", "viewer", "POST", f"{API}/vms/test/kill", 403),
                      ("vic", None, "POST", f"{API}/session", 401),
                      (None, None, "POST", f"{API}/vms/test/stop", 413)]
    assert tcp.get(f"{API}/audit", headers=viewer).status_code == 403


def test_the_log_is_filtered_by_user_and_time(app: FastAPI, tcp: TestClient, admin: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(Marked(app, "unix")) as local:
        local.post(f"{API}/vms/nobody/start")
    tcp.post(f"{API}/vms/nobody/stop", headers=admin)
    assert [r["path"] for r in rows(tcp, admin, user="local")] == [f"{API}/vms/nobody/start"]
    assert [r["transport"] for r in rows(tcp, admin, user="local")] == ["unix"]
    assert [r["path"] for r in rows(tcp, admin, user="ann")] == [f"{API}/vms/nobody/stop"]
    assert len(rows(tcp, admin, since="1h")) == 2
    later = accounts.now() + 7200
    monkeypatch.setattr(accounts, "now", lambda: later)
    assert rows(tcp, admin, since="1h") == []
    assert len(rows(tcp, admin, since="2000-01-01")) == 2
    answer = tcp.get(f"{API}/audit", headers=admin, params={"since": "last tuesday"})
    assert answer.status_code == 400 and "last tuesday" in answer.json()["error"]


def test_parse_since_reads_ages_and_iso_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "now", lambda: 100000.0)
    assert audit.parse_since("90s") == 100000.0 - 90
    assert audit.parse_since("2h") == 100000.0 - 7200
    assert audit.parse_since("1970-01-02T00:00:00+00:00") == 86400.0
    assert audit.parse_since("1970-01-02T00:00:00Z") == 86400.0
