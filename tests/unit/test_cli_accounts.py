"""`kvmhub user`, `kvmhub token` and `kvmhub audit`: the same accounts and audit log the server uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kvmhub.cli.main import app
from kvmhub.errors import Conflict, InvalidInput, NotFound
from kvmhub.server import accounts
from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked

PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)


@pytest.fixture
def secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    return path


def run(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_users_are_added_listed_changed_and_removed(secret_file: Path) -> None:
    assert "user alice added (operator)" in run("user", "add", "alice", "--role", "operator",
                                                 "--password-file", str(secret_file))
    assert "user bob added (viewer)" in run("user", "add", "bob", stdin="another passphrase\nanother passphrase\n")
    listed = json.loads(run("user", "ls", "--json"))
    assert [(u["name"], u["role"]) for u in listed] == [("alice", "operator"), ("bob", "viewer")]
    assert all("password" not in u for u in listed)
    assert "alice  operator" in run("user", "ls")
    assert accounts.login("bob", "another passphrase").role == "viewer"
    run("user", "passwd", "bob", "--password-file", str(secret_file))
    assert accounts.login("bob", PASSWORD).user == "bob"
    assert "user bob removed" in run("user", "rm", "bob")
    assert [u["name"] for u in json.loads(run("user", "ls", "--json"))] == ["alice"]


@pytest.mark.parametrize(("args", "error"), [
    (["user", "add", "alice", "--role", "operator"], Conflict),
    (["user", "add", "root!", "--role", "admin"], InvalidInput),
    (["user", "add", "carl", "--role", "god"], InvalidInput),
    (["user", "rm", "nobody"], NotFound),
    (["user", "passwd", "nobody"], NotFound),
    (["token", "add", "alice", "--role", "admin"], InvalidInput),
    (["token", "add", "nobody"], NotFound),
    (["token", "add", "alice", "--expires", "soon"], InvalidInput),
    (["token", "rm", "ffffffffffff"], NotFound),
    (["audit", "--since", "yesterday-ish"], InvalidInput),
])
def test_mistakes_are_named_and_change_nothing(secret_file: Path, args: list[str], error: type[Exception]) -> None:
    run("user", "add", "alice", "--role", "operator", "--password-file", str(secret_file))
    if args[:2] in (["user", "add"], ["user", "passwd"]):
        args = [*args, "--password-file", str(secret_file)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, error), (result.output, result.exception)
    assert [u.name for u in accounts.list_users()] == ["alice"]
    assert accounts.list_tokens() == []


def test_a_short_password_is_refused(secret_file: Path) -> None:
    secret_file.write_text("short\n")
    result = CliRunner().invoke(app, ["user", "add", "dan", "--password-file", str(secret_file)])
    assert isinstance(result.exception, InvalidInput) and "8 to 1024 characters" in str(result.exception)
    assert accounts.list_users() == []


def test_a_token_secret_is_printed_once_and_works_until_revoked(secret_file: Path) -> None:
    run("user", "add", "alice", "--role", "operator", "--password-file", str(secret_file))
    printed = run("token", "add", "alice", "--role", "viewer", "--project", "web", "--expires", "30d",
                  "--description", "ci").splitlines()
    secret = printed[-1]
    assert secret.startswith("kvh_") and "shown only now" in printed[0]
    listed = json.loads(run("token", "ls", "--json"))
    assert [(t["user"], t["role"], t["project"], t["description"]) for t in listed] == [("alice", "viewer", "web",
                                                                                         "ci")]
    assert listed[0]["expires"] - listed[0]["created"] == pytest.approx(30 * 86400)
    assert secret not in run("token", "ls") and secret not in json.dumps(listed)
    with TestClient(Marked(create_app(ServerSettings(uri="test:///default", socket=None)), "tcp")) as tcp:
        headers = {"Authorization": f"Bearer {secret}"}
        assert tcp.get("/api/v1/session", headers=headers).json() == {"name": "alice", "role": "viewer",
                                                                       "project": "web", "projects": []}
        assert f"token {listed[0]['id']} revoked" in run("token", "rm", listed[0]["id"])
        assert tcp.get("/api/v1/vms", headers=headers).status_code == 401
    assert json.loads(run("token", "ls", "--json")) == []


def test_audit_prints_what_the_server_logged(secret_file: Path) -> None:
    with TestClient(Marked(create_app(ServerSettings(uri="test:///default", socket=None)), "unix")) as local:
        local.post("/api/v1/vms/nobody/start")
        local.post("/api/v1/users", json={"name": "eve", "role": "viewer", "password": PASSWORD})
        local.get("/api/v1/vms")
    logged = json.loads(run("audit", "--json"))
    assert [(r["user"], r["method"], r["path"], r["status"]) for r in logged] == [
        ("local", "POST", "/api/v1/vms/nobody/start", 404), ("local", "POST", "/api/v1/users", 201)]
    assert json.loads(run("audit", "--json", "--user", "eve")) == []
    assert len(json.loads(run("audit", "--json", "--since", "1h"))) == 2
    table = run("audit").splitlines()
    assert table[0].split()[:4] == ["TIME", "USER", "FROM", "CALL"]
    assert "POST /api/v1/users" in table[2] and "create_user" in table[2] and "201" in table[2]
