"""The network routes over libvirt's test driver: networks and their state, reservations, and port forwards
(which the test driver's VM, without a reserved address, cannot have)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.unit.testdriver_state import api_client

NETS = "/api/v1/networks"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with api_client(tmp_path, monkeypatch) as c:
        yield c


def _names(client: TestClient) -> list[str]:
    return [n["name"] for n in client.get(NETS).json()]


def test_networks_list_and_show(client: TestClient) -> None:
    listed = client.get(NETS).json()
    assert [(n["name"], n["mode"], n["subnet"]) for n in listed] == [("default", "nat", "192.168.122.0/24")]
    shown = client.get(f"{NETS}/default").json()
    assert shown["active"] is True and shown["vms"] == ["test"]
    missing = client.get(f"{NETS}/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "network.not_found"


def test_a_network_is_created_stopped_started_and_removed(client: TestClient) -> None:
    made = client.post(NETS, json={"name": "lab", "mode": "isolated", "subnet": "10.77.0.0/24"})
    assert made.status_code == 201, made.text
    assert made.headers["location"] == f"{NETS}/lab"
    assert made.json()["subnet"] == "10.77.0.0/24" and made.json()["active"] and made.json()["autostart"]
    taken = client.post(NETS, json={"name": "lab"})
    assert taken.status_code == 409 and taken.json()["code"] == "name.taken"
    assert client.post(f"{NETS}/lab/stop").json()["active"] is False
    stopped_again = client.post(f"{NETS}/lab/stop")
    assert stopped_again.status_code == 409 and "not active" in stopped_again.json()["error"]
    assert client.post(f"{NETS}/lab/start").json()["active"] is True
    assert client.post(f"{NETS}/lab/autostart", params={"enabled": False}).json()["autostart"] is False
    assert client.delete(f"{NETS}/lab").status_code == 204
    assert client.get(f"{NETS}/lab").status_code == 404
    assert _names(client) == ["default"]


def test_a_network_with_vms_on_it_is_kept_unless_forced(client: TestClient) -> None:
    answer = client.delete(f"{NETS}/default")
    assert answer.status_code == 409 and "test" in answer.json()["error"]
    assert _names(client) == ["default"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"name": "x", "mode": "wormhole"}, 422, "input.invalid"),
    ({"name": "x", "subnet": "10.0.0.0/99"}, 400, "input.invalid"),
    ({"name": "x", "ttl": 5}, 422, "input.invalid"),
    ({"name": "../x"}, 400, "input.invalid_name"),
    ({"name": "a/b"}, 400, "input.invalid_name"),
    ({"mode": "nat"}, 422, "input.invalid"),
])
def test_a_bad_network_is_refused_and_nothing_is_made(client: TestClient, body: dict[str, object], status: int,
                                                     code: str) -> None:
    answer = client.post(NETS, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert _names(client) == ["default"]


@pytest.mark.parametrize("path", [f"{NETS}/..%2Fx", f"{NETS}/a%2Fb/start", f"{NETS}/default/leases/a%2Fb"])
def test_traversal_in_a_network_path_is_not_found(client: TestClient, path: str) -> None:
    assert client.get(path).status_code in (404, 405, 422)
    assert client.post(path).status_code in (404, 405, 422)
    assert client.delete(path).status_code in (404, 405, 422)
    assert _names(client) == ["default"]


def test_lease_requests_name_what_is_missing(client: TestClient) -> None:
    no_vm = client.post(f"{NETS}/default/leases", json={"vm": "nope", "ip": "192.168.122.50"})
    assert no_vm.status_code == 404 and no_vm.json()["code"] == "vm.not_found"
    no_net = client.post(f"{NETS}/nope/leases", json={"vm": "test", "ip": "10.0.0.5"})
    assert no_net.status_code in (400, 404) and "nope" in no_net.json()["error"], no_net.text
    assert client.post(f"{NETS}/default/leases", json={"vm": "test"}).status_code == 422
    none = client.delete(f"{NETS}/default/leases/52:54:00:00:00:99")
    assert none.status_code == 404 and "no reservation" in none.json()["error"]


def test_forwards_of_a_vm(client: TestClient) -> None:
    assert client.get("/api/v1/vms/test/forwards").json() == []
    missing = client.get("/api/v1/vms/nope/forwards")
    assert missing.status_code == 404 and missing.json()["code"] == "vm.not_found"
    # the test driver's VM has no reserved address on a kvmhub network: refused, with the reason
    refused = client.post("/api/v1/vms/test/forwards", json={"host_port": 8080, "guest_port": 80})
    assert refused.status_code == 400 and "no reserved address" in refused.json()["error"]
    none = client.delete("/api/v1/vms/test/forwards/8080")
    assert none.status_code == 404 and "no forward of host port 8080" in none.json()["error"]
    assert client.get("/api/v1/vms/test/forwards").json() == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("post", "/api/v1/vms/test/forwards", {"host_port": 0, "guest_port": 80}),
    ("post", "/api/v1/vms/test/forwards", {"host_port": 8080, "guest_port": 70000}),
    ("post", "/api/v1/vms/test/forwards", {"host_port": 8080, "guest_port": 80, "proto": "sctp"}),
    ("delete", "/api/v1/vms/test/forwards/http", None),
    ("delete", "/api/v1/vms/test/forwards/123456", None),
])
def test_a_malformed_forward_is_422(client: TestClient, method: str, path: str, body: object) -> None:
    answer = client.request(method.upper(), path, json=body)
    assert answer.status_code == 422 and answer.json()["code"] == "input.invalid"
    assert client.get("/api/v1/vms/test/forwards").json() == []
