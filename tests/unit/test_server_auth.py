"""Who may do what through the API on TCP: bearer tokens, browser sessions with CSRF, and a role-by-endpoint
matrix over every route the app has, from its OpenAPI document (so routes added later are held to the same rules)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.errors import OperationTimeout
from kvmhub.models import HostReport
from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.server.transport import Marked
from kvmhub.services import projects
from kvmhub.services.host import checks

URI = "test:///default"  # its built-in VM "test" starts out running
PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)
API = "/api/v1"

# routes anyone may call, credentials or not
PUBLIC = {("POST", f"{API}/session")}
# routes whose paths are an admin's, except these, which every user may call about themselves
ADMIN_PATHS = (f"{API}/users", f"{API}/audit", f"{API}/templates")
# routes that name directories on the server's host (it runs as root)
HOST_PATHS = {("POST", f"{API}/vms/{{name}}/backups"), ("POST", f"{API}/backups/restore"),
              ("POST", f"{API}/backups/verify")}
GUEST_READS = {("GET", f"{API}/vms/{{name}}/files")}  # reads any guest file as the guest's root: an operator's right
SELF_SERVICE = {("POST", f"{API}/users/{{name}}/tokens"), ("DELETE", f"{API}/tokens/{{token_id}}"),
                ("DELETE", f"{API}/session")}


def needed(method: str, path: str) -> Role:
    """The documented rule: viewers read, operators also change VMs and operations, admins everything."""
    if (method, path) in SELF_SERVICE:
        return Role.VIEWER
    if (method, path) in GUEST_READS:
        return Role.OPERATOR
    if path.startswith(ADMIN_PATHS) or (method, path) in HOST_PATHS:
        return Role.ADMIN
    if path.startswith(f"{API}/projects"):  # members read their own projects; admins change them
        return Role.VIEWER if method == "GET" else Role.ADMIN
    return Role.VIEWER if method == "GET" else Role.OPERATOR


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route under the API, as the app's own OpenAPI document lists them."""
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return sorted((method.upper(), path) for path, methods in paths.items() if path.startswith(API)
                  for method in methods)


def filled(path: str, own_name: str) -> str:
    """The path with its parameters filled so an allowed call changes nothing (no such VM, user or token)."""
    path = path.replace("{name}/tokens", f"{own_name}/tokens")
    return re.sub(r"\{[^}]+\}", lambda m: "ffffffffffff" if "id" in m.group(0) else "nobody", path)



@pytest.fixture
def tcp(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(Marked(app, "tcp")) as c:
        yield c


@pytest.fixture
def tokens(tcp: TestClient) -> dict[Role, str]:
    """A user of each role (named after it, a member of the default project) with a token of the user's own role."""
    made = {}
    for role in Role:
        accounts.add_user(str(role), role, PASSWORD)
        projects.add_member("default", str(role))  # the test VM's project: others' VMs answer 404
        made[role] = accounts.add_token(str(role)).secret
    return made


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_every_route_allows_the_roles_it_documents_and_refuses_the_others(
        app: FastAPI, tcp: TestClient, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def probe_skipped(uri: str, *, reprobe: bool = False) -> HostReport:
        raise OperationTimeout("the host probe is not run here")  # it boots a guest for ~20 s

    monkeypatch.setattr(checks, "check", probe_skipped)
    routes = api_routes(app)
    assert ("GET", f"{API}/vms") in routes and ("POST", f"{API}/users") in routes
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for role, secret in tokens.items():
            answer = tcp.request(method, filled(path, str(role)), headers=bearer(secret))
            if accounts.at_least(role, needed(method, path)):
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.text)
                assert answer.json()["code"] == "auth.denied"
    assert tcp.get(f"{API}/vms/test", headers=bearer(tokens[Role.VIEWER])).json()["state"] == "running"
    assert {u["name"] for u in tcp.get(f"{API}/users", headers=bearer(tokens[Role.ADMIN])).json()} == set(Role)


def test_every_route_refuses_missing_wrong_revoked_and_expired_tokens_401(
        app: FastAPI, tcp: TestClient, tokens: dict[Role, str], monkeypatch: pytest.MonkeyPatch) -> None:
    revoked = accounts.add_token("admin")
    accounts.remove_token(revoked.id)
    expiring = accounts.add_token("admin", expires_in=60).secret
    good = tokens[Role.ADMIN]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    later = accounts.now() + 61
    monkeypatch.setattr(accounts, "now", lambda: later)
    bad = {"none": {}, "not bearer": {"Authorization": f"Basic {good}"}, "garbage": bearer("nonsense"),
           "forged": bearer(forged), "revoked": bearer(revoked.secret), "expired": bearer(expiring)}
    for method, path in api_routes(app):
        if (method, path) in PUBLIC:
            continue
        for why, headers in bad.items():
            answer = tcp.request(method, filled(path, "admin"), headers=headers)
            assert answer.status_code == 401, (method, path, why, answer.text)
            assert answer.json()["code"] in ("auth.required", "auth.invalid")
    assert tcp.get(f"{API}/vms", headers=bearer(good)).status_code == 200


def test_the_unix_socket_is_the_local_admin_without_credentials(app: FastAPI) -> None:
    with TestClient(Marked(app, "unix")) as local:
        assert local.get(f"{API}/session").json() == {"name": "local", "role": "admin", "project": None,
                                                      "projects": None}
        assert local.post(f"{API}/users", json={"name": "bob", "role": "viewer", "password": PASSWORD}
                          ).status_code == 201


def test_a_token_restricted_to_a_lower_role_acts_with_that_role(tcp: TestClient, tokens: dict[Role, str]) -> None:
    low = accounts.add_token("admin", role=Role.VIEWER, project="web").secret
    assert tcp.get(f"{API}/session", headers=bearer(low)).json() == {"name": "admin", "role": "viewer",
                                                                      "project": "web", "projects": ["web"]}
    assert tcp.get(f"{API}/vms", headers=bearer(low)).status_code == 200
    refused = tcp.post(f"{API}/vms/test/pause", headers=bearer(low))
    assert refused.status_code == 403 and refused.json()["error"] == "admin is viewer; this needs operator"
    assert tcp.get(f"{API}/users", headers=bearer(low)).status_code == 403
    # nor can it make itself a stronger token, or one outside its project
    assert tcp.post(f"{API}/users/admin/tokens", headers=bearer(low), json={"role": "admin"}).status_code == 403
    assert tcp.post(f"{API}/users/admin/tokens", headers=bearer(low), json={"project": "db"}).status_code == 403
    same = tcp.post(f"{API}/users/admin/tokens", headers=bearer(low), json={})
    assert same.status_code == 201 and (same.json()["role"], same.json()["project"]) == ("viewer", "web")
    assert tcp.post(f"{API}/vms/test/pause", headers=bearer(same.json()["secret"])).status_code == 403
    # a token above its user's role is refused when made
    answer = tcp.post(f"{API}/users/operator/tokens", headers=bearer(tokens[Role.ADMIN]), json={"role": "admin"})
    assert answer.status_code == 400 and "the user is operator" in answer.json()["error"]


def test_tokens_are_shown_once_listed_without_secrets_and_revoked_by_their_owner(
        tcp: TestClient, tokens: dict[Role, str]) -> None:
    viewer, admin = bearer(tokens[Role.VIEWER]), bearer(tokens[Role.ADMIN])
    made = tcp.post(f"{API}/users/viewer/tokens", headers=viewer, json={"description": "laptop"}).json()
    assert made["secret"].startswith("kvh_") and made["user"] == "viewer"
    listed = tcp.get(f"{API}/tokens", headers=viewer).json()
    assert [t["description"] for t in listed] == ["", "laptop"]
    assert all("secret" not in t and made["secret"] not in str(t) for t in listed)
    assert {t["user"] for t in tcp.get(f"{API}/tokens", headers=admin).json()} == set(Role)
    # a viewer may not make tokens for others, nor revoke theirs
    assert tcp.post(f"{API}/users/admin/tokens", headers=viewer).status_code == 403
    admins = [t["id"] for t in tcp.get(f"{API}/tokens", headers=admin, params={"user": "admin"}).json()]
    assert tcp.delete(f"{API}/tokens/{admins[0]}", headers=viewer).json()["code"] == "token.not_found"
    assert tcp.delete(f"{API}/tokens/{made['id']}", headers=viewer).status_code == 204
    assert tcp.get(f"{API}/vms", headers=bearer(made["secret"])).status_code == 401
    assert tcp.get(f"{API}/vms", headers=viewer).status_code == 200


def test_users_are_made_listed_and_removed_with_clear_errors(tcp: TestClient, tokens: dict[Role, str]) -> None:
    admin = bearer(tokens[Role.ADMIN])
    made = tcp.post(f"{API}/users", headers=admin, json={"name": "carol", "role": "operator", "password": PASSWORD})
    assert made.status_code == 201 and made.json()["role"] == "operator" and "password" not in made.json()
    again = tcp.post(f"{API}/users", headers=admin, json={"name": "carol", "role": "viewer", "password": PASSWORD})
    assert again.status_code == 409 and again.json()["code"] == "name.taken"
    for bad in ({"name": "../x", "role": "viewer", "password": PASSWORD},
                {"name": "dave", "role": "root", "password": PASSWORD},
                {"name": "dave", "role": "viewer", "password": "short"},
                {"name": "local", "role": "viewer", "password": PASSWORD}):
        answer = tcp.post(f"{API}/users", headers=admin, json=bad)
        assert 400 <= answer.status_code < 500 and answer.json()["error"], bad
    carol = accounts.add_token("carol").secret
    assert tcp.delete(f"{API}/users/carol", headers=admin).status_code == 204
    assert tcp.get(f"{API}/vms", headers=bearer(carol)).status_code == 401  # its tokens went with it
    gone = tcp.delete(f"{API}/users/carol", headers=admin)
    assert gone.status_code == 404 and gone.json()["code"] == "user.not_found"
    assert [u["name"] for u in tcp.get(f"{API}/users", headers=admin).json()] == ["admin", "operator", "viewer"]


def _log_in(client: TestClient, user: str = "operator", password: str = PASSWORD) -> str:
    answer = client.post(f"{API}/session", json={"user": user, "password": password})
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf_token"]
    return csrf


def test_a_session_cookie_needs_the_csrf_token_for_changes_only(tcp: TestClient, tokens: dict[Role, str]) -> None:
    answer = tcp.post(f"{API}/session", json={"user": "operator", "password": PASSWORD})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert answer.json()["user"] == "operator" and answer.json()["csrf_header"] == "X-CSRF-Token"
    csrf = answer.json()["csrf_token"]
    assert csrf not in cookie
    assert tcp.get(f"{API}/vms").status_code == 200  # reads need no CSRF token
    refused = tcp.post(f"{API}/vms/test/pause")
    assert refused.status_code == 403 and refused.json()["code"] == "auth.csrf"
    assert tcp.post(f"{API}/vms/test/pause", headers={"X-CSRF-Token": "wrong"}).json()["code"] == "auth.csrf"
    assert tcp.get(f"{API}/vms/test").json()["state"] == "running"
    started = tcp.post(f"{API}/vms/test/pause", headers={"X-CSRF-Token": csrf})
    assert started.status_code == 202
    done = tcp.get(f"{API}/operations/{started.json()['id']}/wait", params={"timeout": 20}).json()
    assert done["state"] == "succeeded"
    assert tcp.delete(f"{API}/session").json()["code"] == "auth.csrf"  # logging out is a change too
    assert tcp.delete(f"{API}/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert tcp.get(f"{API}/vms").status_code == 401


def test_a_bearer_token_needs_no_csrf_token(tcp: TestClient, tokens: dict[Role, str]) -> None:
    answer = tcp.post(f"{API}/vms/nobody/pause", headers=bearer(tokens[Role.OPERATOR]))
    assert answer.status_code == 404 and answer.json()["code"] == "vm.not_found"


def test_the_session_cookie_is_secure_over_tls(app: FastAPI, tokens: dict[Role, str]) -> None:
    with TestClient(Marked(app, "tcp"), base_url="https://testserver") as tls:
        answer = tls.post(f"{API}/session", json={"user": "viewer", "password": PASSWORD})
        assert "Secure" in answer.headers["set-cookie"]


def test_wrong_passwords_are_refused_then_the_user_is_locked_out(tcp: TestClient, tokens: dict[Role, str]) -> None:
    unknown = tcp.post(f"{API}/session", json={"user": "nobody", "password": PASSWORD})
    wrong = tcp.post(f"{API}/session", json={"user": "viewer", "password": "not it at all"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"] == wrong.json()["error"] == "wrong user name or password"
    for _ in range(accounts.FREE_FAILURES - 1):
        assert tcp.post(f"{API}/session", json={"user": "viewer", "password": "guess"}).status_code == 401
    locked = tcp.post(f"{API}/session", json={"user": "viewer", "password": PASSWORD})
    assert locked.status_code == 429 and locked.json()["code"] == "auth.throttled", locked.text
    assert "try again in" in locked.json()["error"]
    assert _log_in(tcp, "operator")  # other users are not held up
    accounts.set_password("viewer", "a new passphrase")
    assert _log_in(tcp, "viewer", "a new passphrase")


def test_expired_sessions_are_refused(tcp: TestClient, tokens: dict[Role, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _log_in(tcp)
    later = accounts.now() + accounts.SESSION_S + 1
    monkeypatch.setattr(accounts, "now", lambda: later)
    answer = tcp.get(f"{API}/vms")
    assert answer.status_code == 401 and answer.json()["code"] == "auth.invalid"
