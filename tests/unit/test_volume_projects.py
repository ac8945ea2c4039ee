"""Volumes owned by projects, through the API over libvirt's test driver: a volume made by a member of project A
is A's; B's members meet it as a missing volume on every volume route and when a request's body names it; a VM's
disk is its VM's project's; unused volumes count in their project's disk quota."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.models import ProjectRequest
from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.server.transport import Marked
from kvmhub.services import projects

from .test_projects import vm_xml

API = "/api/v1"
VOLS = f"{API}/pools/default-pool/volumes"
PASSWORD = "correct horse battery"  # noqa: S105 (the test users' password)
MIB = 1 << 20


@pytest.fixture
def tcp(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(Marked(app, "tcp")) as c:
        yield c


@pytest.fixture
def local(app: FastAPI, tcp: TestClient) -> Iterator[TestClient]:
    with TestClient(Marked(app, "unix")) as c:
        before = {v["name"] for v in c.get(VOLS).json()}
        yield c
        for v in c.get(VOLS).json():  # the test driver's pool outlives the test: take back what it made
            if v["name"] not in before:
                c.delete(f"{VOLS}/{v['name']}")


@pytest.fixture
def heads(app: FastAPI, local: TestClient) -> dict[str, dict[str, str]]:
    """Projects a and b; alice operates in a, bob in b; their tokens' headers."""
    out = {}
    for user, project in (("alice", "a"), ("bob", "b")):
        projects.create_project(ProjectRequest(name=project))
        accounts.add_user(user, Role.OPERATOR, PASSWORD)
        projects.add_member(project, user)
        out[user] = {"Authorization": f"Bearer {accounts.add_token(user).secret}"}
    return out


def _names(client: TestClient, headers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    answer = client.get(VOLS, headers=headers or {})
    assert answer.status_code == 200, answer.text
    return sorted((v["name"], v["project"]) for v in answer.json())


def test_a_volume_is_its_makers_project_and_hidden_from_others_on_every_volume_route(
        app: FastAPI, tcp: TestClient, local: TestClient, heads: dict[str, dict[str, str]]) -> None:
    made = tcp.post(VOLS, headers=heads["alice"], json={"name": "pa.qcow2", "capacity_bytes": MIB})
    assert made.status_code == 201 and made.json()["project"] == "a", made.text
    assert ("pa.qcow2", "a") in _names(tcp, heads["alice"])
    assert "pa.qcow2" not in [n for n, _ in _names(tcp, heads["bob"])]
    assert ("pa.qcow2", "a") in _names(local)  # the admin sees all, with their projects
    missing = tcp.get(f"{VOLS}/nosuch", headers=heads["bob"]).json()
    routes = sorted((m.upper(), p) for p, methods in app.openapi()["paths"].items()
                    if p.startswith(f"{API}/pools/{{pool}}/volumes/{{name}}") for m in methods)
    assert len(routes) >= 6  # show, rm, clone, resize, data in and out
    for method, path in routes:
        url = re.sub(r"\{pool\}", "default-pool", path).replace("{name}", "pa.qcow2")
        answer = tcp.request(method, url, headers=heads["bob"], json={"target": "x", "capacity_bytes": MIB})
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json() == {**missing, "error": "no volume 'pa.qcow2' in pool default-pool",
                                 "hint": answer.json()["hint"], "terms": answer.json()["terms"]}, (method, path)
    assert local.get(f"{VOLS}/pa.qcow2").json()["capacity_bytes"] == MIB  # nothing changed it
    assert tcp.delete(f"{VOLS}/pa.qcow2", headers=heads["alice"]).status_code == 204


def test_a_body_naming_another_projects_volume_is_answered_as_for_a_missing_one(
        tcp: TestClient, heads: dict[str, dict[str, str]]) -> None:
    assert tcp.post(VOLS, headers=heads["bob"], json={"name": "pb.qcow2", "capacity_bytes": MIB}).status_code == 201
    for route, body in ((VOLS, {"name": "over.qcow2", "backing": "default-pool/pb.qcow2"}),
                        (f"{API}/vms", {"name": "n1", "vol": "default-pool/pb.qcow2"}),
                        (f"{API}/images", {"name": "i1", "media": {"volume": "default-pool/pb.qcow2"}})):
        answer = tcp.post(route, headers=heads["alice"], json=body)
        assert answer.status_code == 404, (route, answer.text)
        assert answer.json()["error"] == "no volume 'pb.qcow2' in pool default-pool", route
    assert "over.qcow2" not in [n for n, _ in _names(tcp, heads["bob"])]


def test_a_vms_disk_is_its_vms_project(app: FastAPI, tcp: TestClient, local: TestClient,
                                       heads: dict[str, dict[str, str]]) -> None:
    assert local.post(VOLS, json={"name": "disk-a.img", "capacity_bytes": MIB, "format": "raw"}).status_code == 201
    hv: Hypervisor = app.state.hv
    projects.forget_volume(hv.uri, "default-pool/disk-a.img")  # as if another tool had made it
    hv_domains.define(hv, vm_xml("va", "a", volume="disk-a.img"))
    try:
        assert ("disk-a.img", "a") in _names(tcp, heads["alice"])
        assert tcp.get(f"{VOLS}/disk-a.img", headers=heads["bob"]).status_code == 404
    finally:
        hv.conn.lookupByName("va").undefine()


def test_unused_volumes_count_in_the_disk_quota(tcp: TestClient, local: TestClient,
                                               heads: dict[str, dict[str, str]]) -> None:
    assert local.patch(f"{API}/projects/a", json={"max_disk": 3 * MIB}).status_code == 200
    assert tcp.post(VOLS, headers=heads["alice"], json={"name": "q1.qcow2", "capacity_bytes": 2 * MIB}
                    ).status_code == 201
    assert local.get(f"{API}/projects/a").json()["use"]["disk"] == 2 * MIB
    refused = tcp.post(VOLS, headers=heads["alice"], json={"name": "q2.qcow2", "capacity_bytes": 2 * MIB})
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "project.quota_exceeded"
    assert refused.json()["error"] == ("project 'a' is over its disk quota: limit 3 MiB, in use 2 MiB, "
                                       "this request adds 2 MiB")
    assert refused.json()["hint"] == ("raise the quota (`PATCH /api/v1/projects/a` max_disk), or remove VMs or "
                                      "volumes of the project")
    grown = tcp.post(f"{VOLS}/q1.qcow2/resize", headers=heads["alice"], json={"capacity_bytes": 4 * MIB})
    assert grown.status_code == 403 and grown.json()["code"] == "project.quota_exceeded"
    assert "q2.qcow2" not in [n for n, _ in _names(local)]
    assert local.get(f"{VOLS}/q1.qcow2").json()["capacity_bytes"] == 2 * MIB
    in_b = tcp.post(VOLS, headers=heads["bob"], json={"name": "q3.qcow2", "capacity_bytes": 2 * MIB})
    assert in_b.status_code == 201  # project b has no such quota
    kept = local.delete(f"{API}/projects/a")
    assert kept.status_code == 409 and "still owns 1 volume(s): default-pool/q1.qcow2" in kept.json()["error"]
    assert tcp.delete(f"{VOLS}/q1.qcow2", headers=heads["alice"]).status_code == 204
    assert local.get(f"{API}/projects/a").json()["use"]["disk"] == 0
    assert local.delete(f"{API}/projects/a").status_code == 204
