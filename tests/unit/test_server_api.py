"""The REST API in-process over libvirt's test driver: listing, errors as data, operations (202, wait,
result, cancel), the unix-socket door vs TCP, and bad input answered 4xx with nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked

URI = "test:///default"  # its built-in VM "test" starts out running




def _finished(client: TestClient, answer: object) -> dict[str, object]:
    from httpx import Response

    assert isinstance(answer, Response)
    assert answer.status_code == 202, answer.text
    op = answer.json()
    assert answer.headers["location"] == f"/api/v1/operations/{op['id']}"
    done = client.get(f"/api/v1/operations/{op['id']}/wait", params={"timeout": 20}).json()
    assert isinstance(done, dict)
    return done


def test_vms_list_and_show(client: TestClient) -> None:
    listed = client.get("/api/v1/vms")
    assert listed.status_code == 200
    assert [(v["name"], v["state"]) for v in listed.json()] == [("test", "running")]
    shown = client.get("/api/v1/vms/test").json()
    assert shown["name"] == "test" and shown["vcpus"] >= 1


def test_a_missing_vm_is_a_404_with_code_cause_and_an_api_hint(client: TestClient) -> None:
    answer = client.get("/api/v1/vms/nope")
    assert answer.status_code == 404
    body = answer.json()
    assert body["code"] == "vm.not_found" and body["error"] == "no VM named 'nope'"
    assert {"code", "error", "cause", "hint", "detail"} <= set(body) and body["kind"] == "NotFound"
    assert "kvmhub" not in (body["hint"] or "")  # hints name API operations, not CLI commands


def test_state_changes_are_operations_with_their_result(client: TestClient) -> None:
    done = _finished(client, client.post("/api/v1/vms/test/pause"))
    assert done["state"] == "succeeded" and done["kind"] == "vm.pause" and done["target"] == "test"
    assert isinstance(done["result"], dict) and done["result"]["state"] == "paused"
    again = _finished(client, client.post("/api/v1/vms/test/pause"))  # refused: it is paused already
    assert again["state"] == "failed"
    assert isinstance(again["error"], dict) and again["error"]["code"] == "vm.wrong_state"
    done = _finished(client, client.post("/api/v1/vms/test/kill"))
    assert done["state"] == "succeeded", done
    assert client.get("/api/v1/vms/test").json()["state"] == "shut off"
    kinds = [op["kind"] for op in client.get("/api/v1/operations").json()]
    assert kinds[:3] == ["vm.kill", "vm.pause", "vm.pause"]


def test_cancelling_a_finished_operation_leaves_it_as_it_was(client: TestClient) -> None:
    done = _finished(client, client.post("/api/v1/vms/test/resume"))  # fails: the VM is running
    answer = client.delete(f"/api/v1/operations/{done['id']}")
    assert answer.status_code == 202 and answer.json()["state"] == "failed"
    assert client.get("/api/v1/operations/ffffffffffff").status_code == 404
    assert client.get("/api/v1/operations/..%2Fetc").status_code in (404, 422)


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("post", "/api/v1/vms/test/stop", {"json": {"force": "maybe"}}),
    ("post", "/api/v1/vms/test/stop", {"json": {"force": True, "extra": 1}}),
    ("post", "/api/v1/vms/test/stop", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("post", "/api/v1/vms/test/explode", {}),
    ("get", "/api/v1/vms/[bold]x", {}),
    ("get", "/api/v1/operations", {"params": {"limit": -1}}),
])
def test_bad_input_is_a_4xx_with_an_error_body_and_changes_nothing(client: TestClient, method: str, path: str,
                                                                  kwargs: dict[str, object]) -> None:
    answer = getattr(client, method)(path, **kwargs)
    assert 400 <= answer.status_code < 500, answer.text
    assert {"code", "error"} <= set(answer.json())
    assert client.get("/api/v1/vms/test").json()["state"] == "running"
    assert client.get("/api/v1/operations").json() == []


def test_an_oversized_body_is_refused_413(client: TestClient) -> None:
    answer = client.post("/api/v1/vms/test/stop", content=b"x" * (2 << 20),
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["code"] == "input.too_large"


def test_tcp_callers_without_credentials_get_401(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    with TestClient(Marked(create_app(ServerSettings(uri=URI, socket=None)), "tcp")) as tcp:
        answer = tcp.get("/api/v1/vms")
        assert answer.status_code == 401 and answer.json()["code"] == "auth.required"
        assert answer.headers["www-authenticate"] == "Bearer"
        assert tcp.get("/openapi.json").status_code == 200  # the schema is public; the API is not


def test_openapi_names_the_operation_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/api/v1/vms/{name}/{action}"]["post"]["responses"]["202"]
    assert "/api/v1/operations/{op_id}/wait" in spec["paths"]


def test_a_query_parameter_the_route_does_not_take_is_refused_and_nothing_happens(client: TestClient) -> None:
    answer = client.delete("/api/v1/vms/test", params={"keep_disk": "true"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "input.invalid" and "keep_disk" in body["error"] and "keep_disks" in body["error"]
    assert client.get("/api/v1/vms/test").status_code == 200
    assert client.get("/api/v1/vms", params={"x": "1"}).status_code == 422
    assert client.get("/api/v1/operations", params={"limit": 5}).status_code == 200
