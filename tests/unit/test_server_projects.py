"""Projects through the API on TCP: a member of project A meets project B's VM as a missing one (404) on every
/vms/{name} route; listings hold the caller's projects only; an admin sees all; a quota refusal is 403 with the
quota and the use; only admins change projects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.models import ProjectRequest
from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.server.transport import Marked
from kvmhub.services import projects
from kvmhub.services.network import networks

from .test_projects import vm_xml

API = "/api/v1"
PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)


@pytest.fixture
def tcp(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(Marked(app, "tcp")) as c:
        yield c


@pytest.fixture
def local(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(Marked(app, "unix")) as c:
        yield c


@pytest.fixture
def world(app: FastAPI, tcp: TestClient) -> dict[str, dict[str, str]]:
    """Projects a and b, each with a VM (va, vb); alice operates in a, bob views b; their tokens' headers."""
    hv: Hypervisor = app.state.hv  # the server's connection: the test driver forgets all when its last one closes
    for p in ("a", "b"):
        projects.create_project(ProjectRequest(name=p))
        hv_domains.define(hv, vm_xml(f"v{p}", p))
    heads = {}
    for user, role, project in (("alice", Role.OPERATOR, "a"), ("bob", Role.VIEWER, "b")):
        accounts.add_user(user, role, PASSWORD)
        projects.add_member(project, user)
        heads[user] = {"Authorization": f"Bearer {accounts.add_token(user).secret}"}
    return heads


def vm_routes(app: FastAPI) -> list[tuple[str, str]]:
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return sorted((m.upper(), p) for p, methods in paths.items() if p.startswith(f"{API}/vms/{{name}}")
                  for m in methods)


def test_another_projects_vm_is_a_missing_vm_on_every_vm_route(app: FastAPI, tcp: TestClient,
                                                               world: dict[str, dict[str, str]]) -> None:
    routes = vm_routes(app)
    assert len(routes) > 25  # snapshots, backups, disks, nics, exports, consoles... all of them
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x1", path.replace("{name}", "vb", 1))
        answer = tcp.request(method, url, headers=world["alice"], json={})
        if answer.status_code == 403 and answer.json()["code"] == "auth.denied":  # her role may not, whatever VM
            own = tcp.request(method, url.replace("/vb", "/va", 1), headers=world["alice"], json={})
            assert (own.status_code, own.json()) == (403, answer.json()), (method, path)
            continue
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json() == {"code": "vm.not_found", "error": "no VM named 'vb'", "cause": None,
                                 "hint": "list them: `GET /api/v1/vms`", "detail": None, "kind": "NotFound",
                                 "terms": answer.json()["terms"]}, (method, path)
    with pytest.raises(WebSocketDenialResponse) as denied, \
            tcp.websocket_connect(f"{API}/vms/vb/console", headers=world["alice"]):
        pass  # the serial console, a WebSocket the OpenAPI document does not list
    assert denied.value.status_code == 404 and denied.value.json()["error"] == "no VM named 'vb'"
    missing = tcp.get(f"{API}/vms/nosuch", headers=world["alice"]).json()
    hidden = tcp.get(f"{API}/vms/vb", headers=world["alice"]).json()
    assert hidden == {**missing, "error": "no VM named 'vb'", "terms": hidden["terms"]}
    # their own project's VM answers
    assert tcp.get(f"{API}/vms/va", headers=world["alice"]).json()["project"] == "a"
    assert tcp.get(f"{API}/vms/vb", headers=world["bob"]).json()["project"] == "b"


def test_listings_hold_the_callers_projects_and_an_admin_sees_all(tcp: TestClient, local: TestClient,
                                                                 world: dict[str, dict[str, str]]) -> None:
    assert [(v["name"], v["project"]) for v in tcp.get(f"{API}/vms", headers=world["alice"]).json()] == [("va", "a")]
    assert [v["name"] for v in tcp.get(f"{API}/vms", headers=world["bob"]).json()] == ["vb"]
    assert [(v["name"], v["project"]) for v in local.get(f"{API}/vms").json()] == [
        ("test", "default"), ("va", "a"), ("vb", "b")]
    assert [p["name"] for p in tcp.get(f"{API}/projects", headers=world["alice"]).json()] == ["a"]
    assert [p["name"] for p in local.get(f"{API}/projects").json()] == ["a", "b", "default"]
    assert tcp.get(f"{API}/projects/b", headers=world["alice"]).json()["code"] == "project.not_found"
    shown = tcp.get(f"{API}/projects/a", headers=world["alice"]).json()
    assert shown["members"] == ["alice"] and shown["use"]["vms"] == 1 and shown["use"]["memory"] == 256 * 1024**2


def test_a_create_in_a_project_the_caller_is_not_in_is_refused_as_missing(tcp: TestClient,
                                                                         world: dict[str, dict[str, str]]) -> None:
    answer = tcp.post(f"{API}/vms", headers=world["alice"], json={"name": "n1", "image": "tiny", "project": "b"})
    assert answer.status_code == 404 and answer.json()["code"] == "project.not_found", answer.text
    assert answer.json()["error"] == "no project named 'b'"


def test_quota_refusal_is_403_with_the_quota_and_the_use(tcp: TestClient, local: TestClient,
                                                         world: dict[str, dict[str, str]]) -> None:
    assert local.patch(f"{API}/projects/a", json={"max_memory": 512 * 1024**2}).status_code == 200
    answer = tcp.post(f"{API}/vms", headers=world["alice"], json={"name": "n1", "image": "tiny", "memory": "512M"})
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["code"] == "project.quota_exceeded"
    assert body["error"] == ("project 'a' is over its memory quota: limit 512 MiB, in use 256 MiB, "
                             "this request adds 512 MiB")
    assert body["hint"] == "raise the quota (`PATCH /api/v1/projects/a` max_memory), or remove VMs of the project"
    assert [v["name"] for v in local.get(f"{API}/vms").json()] == ["test", "va", "vb"]  # nothing made
    assert local.get(f"{API}/operations").json() == []


def test_only_admins_change_projects(tcp: TestClient, local: TestClient, world: dict[str, dict[str, str]]) -> None:
    assert tcp.post(f"{API}/projects", headers=world["alice"], json={"name": "c"}).status_code == 403
    assert tcp.patch(f"{API}/projects/a", headers=world["alice"], json={"max_vms": 9}).status_code == 403
    made = local.post(f"{API}/projects", json={"name": "c", "max_vms": 2})
    assert made.status_code == 201 and made.json()["quota"]["max_vms"] == 2
    assert local.post(f"{API}/projects/c/members", json={"user": "bob"}).json()["members"] == ["bob"]
    assert [p["name"] for p in tcp.get(f"{API}/projects", headers=world["bob"]).json()] == ["b", "c"]
    assert local.delete(f"{API}/projects/c/members/bob").json()["members"] == []
    refused = local.delete(f"{API}/projects/a")
    assert refused.status_code == 409 and refused.json()["code"] == "project.not_empty"
    assert local.delete(f"{API}/projects/c").status_code == 204
    assert local.get(f"{API}/projects/c").status_code == 404


def test_a_members_event_stream_holds_its_projects_events_only(app: FastAPI, tcp: TestClient,
                                                               world: dict[str, dict[str, str]]) -> None:
    bus = app.state.bus
    bus.publish("lifecycle", {"n": 1}, vm="vb", project="b")
    bus.publish("lifecycle", {"n": 2}, vm="va", project="a")
    bus.publish("operation", {"n": 3}, vm="test")  # a VM that names no project: default's
    bus.publish("operation", {"n": 4}, vm="va", project="a")
    with tcp.websocket_connect("/api/v1/events?since=0", headers=world["alice"]) as ws:
        seen: list[tuple[str | None, object]] = []
        while not seen or seen[-1][1] != 4:  # its VM's own lifecycle events (defined) come too
            event = ws.receive_json()
            seen.append((event["project"], event["data"].get("n")))
        assert {p for p, _n in seen} == {"a"} and [n for _p, n in seen if n is not None] == [2, 4]
    with tcp.websocket_connect("/api/v1/events?since=0&project=b", headers=world["alice"]) as ws:
        bus.publish("lifecycle", {"n": 5}, vm="va", project="a")  # asking for b shows nothing of b, nor of a
        bus.publish("lifecycle", {"n": 6}, vm="vb", project="b")
        bus.publish("missed", {"n": 7})
        assert ws.receive_json()["type"] == "missed"


@pytest.fixture
def nets(app: FastAPI, world: dict[str, dict[str, str]]) -> Iterator[dict[str, dict[str, str]]]:
    """``world`` with a network in each project: na in a, nb in b; the networks made are gone afterwards."""
    hv: Hypervisor = app.state.hv
    networks.create(hv, "na", subnet="10.81.0.0/24", project="a")
    networks.create(hv, "nb", subnet="10.82.0.0/24", project="b")
    yield world
    for net in hv.conn.listAllNetworks(0):
        if net.name() != "default":
            if net.isActive():
                net.destroy()
            net.undefine()


def network_routes(app: FastAPI) -> list[tuple[str, str]]:
    paths: dict[str, dict[str, object]] = app.openapi()["paths"]
    return sorted((m.upper(), p) for p, methods in paths.items() if p.startswith(f"{API}/networks/{{name}}")
                  for m in methods)


def test_another_projects_network_is_a_missing_network_on_every_network_route(
        app: FastAPI, tcp: TestClient, nets: dict[str, dict[str, str]]) -> None:
    routes = network_routes(app)
    assert len(routes) >= 8  # show, rm, start, stop, autostart, leases...
    missing = json.loads(tcp.get(f"{API}/networks/nope", headers=nets["alice"]).text.replace("'nope'", "'nb'"))
    assert missing["error"] == "no network 'nb'" and missing["code"] == "network.not_found"
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", "x1", path.replace("{name}", "nb", 1))
        answer = tcp.request(method, url, headers=nets["alice"], json={"vm": "va", "ip": "10.82.0.9"})
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json() == missing, (method, path)
    assert tcp.get(f"{API}/networks/na", headers=nets["bob"]).status_code == 404  # a viewer's reads too
    assert tcp.get(f"{API}/networks/nb", headers=nets["bob"]).json()["project"] == "b"
    assert tcp.get(f"{API}/networks/nb", headers=nets["alice"]).status_code == 404
    assert [n["active"] for n in tcp.get(f"{API}/networks", headers=nets["bob"]).json()] == [True]  # untouched


def test_network_listings_hold_the_callers_projects_and_an_admin_sees_all(
        tcp: TestClient, local: TestClient, nets: dict[str, dict[str, str]]) -> None:
    assert [(n["name"], n["project"]) for n in tcp.get(f"{API}/networks", headers=nets["bob"]).json()] == [
        ("nb", "b")]
    assert sorted((n["name"], n["project"]) for n in local.get(f"{API}/networks").json()) == [
        ("default", "default"), ("na", "a"), ("nb", "b")]
    assert local.get(f"{API}/projects/a").json()["use"]["networks"] == 1


def test_a_network_create_acts_in_the_callers_project_under_its_quota(
        tcp: TestClient, local: TestClient, nets: dict[str, dict[str, str]]) -> None:
    elsewhere = tcp.post(f"{API}/networks", headers=nets["alice"], json={"name": "n2", "project": "b"})
    assert elsewhere.status_code == 404 and elsewhere.json()["code"] == "project.not_found"
    assert local.patch(f"{API}/projects/a", json={"max_networks": 1}).status_code == 200
    refused = tcp.post(f"{API}/networks", headers=nets["alice"], json={"name": "n2", "subnet": "10.83.0.0/24"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == ("project 'a' is over its networks quota: limit 1, in use 1, "
                                       "this request adds 1")
    assert local.get(f"{API}/networks/n2").status_code == 404  # nothing defined
    assert local.patch(f"{API}/projects/a", json={"max_networks": 2}).status_code == 200
    made = tcp.post(f"{API}/networks", headers=nets["alice"], json={"name": "n2", "subnet": "10.83.0.0/24"})
    assert made.status_code == 201 and made.json()["project"] == "a"  # her only project
    assert tcp.delete(f"{API}/networks/n2", headers=nets["alice"]).status_code == 204
    assert local.get(f"{API}/projects/a").json()["use"]["networks"] == 1


def test_a_vm_on_another_projects_network_is_refused_as_missing(tcp: TestClient,
                                                                nets: dict[str, dict[str, str]]) -> None:
    answer = tcp.post(f"{API}/vms", headers=nets["alice"], json={"name": "n1", "image": "tiny", "network": "nb"})
    assert answer.status_code == 404 and answer.json()["error"] == "no network 'nb'"
    added = tcp.post(f"{API}/vms/va/nics", headers=nets["alice"], json={"network": "nb"})
    assert added.status_code == 404 and added.json()["error"] == "no network 'nb'"


def test_a_reservation_for_another_projects_vm_is_refused_as_a_missing_vm(app: FastAPI, tcp: TestClient,
                                                                          nets: dict[str, dict[str, str]]) -> None:
    missing = tcp.post(f"{API}/networks/na/leases", headers=nets["alice"], json={"vm": "nope", "ip": "10.81.0.9"})
    answer = tcp.post(f"{API}/networks/na/leases", headers=nets["alice"], json={"vm": "vb", "ip": "10.81.0.9"})
    assert answer.status_code == 404 == missing.status_code
    assert answer.json() == json.loads(missing.text.replace("'nope'", "'vb'"))
    hv: Hypervisor = app.state.hv
    assert "10.81.0.9" not in hv.conn.networkLookupByName("na").XMLDesc(0)  # nothing reserved
