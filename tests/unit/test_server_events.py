"""``/api/v1/events`` over WebSocket in-process on libvirt's test driver: filters, resuming with ``since``, the
``missed`` event instead of a silent gap, libvirt lifecycle events naming who asked, and the door's auth."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from kvmhub.models.stats import Event
from kvmhub.server.bus import EventBus
from kvmhub.server.lifecycle_events import classify
from kvmhub.server.transport import Marked

URI = "test:///default"
WS = "/api/v1/events"




def _bus(client: TestClient) -> EventBus:
    bus: EventBus = client.app.app.state.bus  # type: ignore[attr-defined]
    return bus


def _receive(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.receive_text())
    return message


def _publish_three(bus: EventBus) -> None:
    bus.publish("operation", {"n": 1}, vm="a", project="p1")
    bus.publish("device", {"n": 2}, vm="b", project="p2")
    bus.publish("lifecycle", {"n": 3}, vm="a", project="p2")


def test_replay_and_filters_by_vm_project_and_type(client: TestClient) -> None:
    bus = _bus(client)
    _publish_three(bus)
    bus.publish("operation", {"n": 4}, vm="c")  # the last one: every stream below ends on its own match
    cases = {
        "since=0&vm=a": [1, 3],
        "since=0&project=p2": [2, 3],
        "since=0&type=device,lifecycle": [2, 3],
        "since=0&type=device&type=operation&vm=b": [2],
        "since=1": [2, 3, 4],
    }
    for query, expected in cases.items():
        with client.websocket_connect(f"{WS}?{query}") as ws:
            got = [_receive(ws)["data"]["n"] for _ in expected]
            assert got == expected, query


def test_live_events_follow_the_replay_without_duplicates(client: TestClient) -> None:
    bus = _bus(client)
    bus.publish("operation", {"n": 1})
    with client.websocket_connect(f"{WS}?since=0") as ws:
        first = _receive(ws)
        bus.publish("operation", {"n": 2})
        second = _receive(ws)
    assert (first["seq"], first["data"], second["seq"], second["data"]) == (1, {"n": 1}, 2, {"n": 2})


def test_resuming_after_events_left_the_ring_says_how_many_were_missed(app: FastAPI) -> None:
    with TestClient(Marked(app, "unix")) as client:
        bus = _bus(client)
        small = EventBus(keep=3)
        client.app.app.state.bus = small  # type: ignore[attr-defined]
        for n in range(1, 8):
            small.publish("operation", {"n": n})
        del bus
        with client.websocket_connect(f"{WS}?since=2") as ws:
            missed = _receive(ws)
            rest = [_receive(ws) for _ in range(3)]
    # 3 and 4 are gone; 5, 6, 7 are still in the ring
    assert missed["type"] == "missed" and missed["data"]["count"] == 2 and missed["data"]["next"] == 5
    assert missed["seq"] == 4
    assert [e["seq"] for e in rest] == [5, 6, 7]


def test_a_client_that_falls_behind_gets_the_rest_from_the_ring(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = _bus(client)
    monkeypatch.setattr("kvmhub.server.bus.QUEUE", 2)  # a queue that overflows at once
    with client.websocket_connect(WS) as ws:
        bus.publish("operation", {"n": 0})  # the stream is live once this one arrives
        assert _receive(ws)["data"] == {"n": 0}
        for n in range(1, 40):
            bus.publish("operation", {"n": n})
        got = [_receive(ws)["data"]["n"] for _ in range(39)]
    assert got == list(range(1, 40))


def test_a_seq_from_an_earlier_server_run_is_not_a_silent_gap(client: TestClient) -> None:
    bus = _bus(client)
    bus.publish("operation", {"n": 1})
    with client.websocket_connect(f"{WS}?since=500") as ws:
        notice = _receive(ws)
        replayed = _receive(ws)
    assert notice["type"] == "missed" and "restarted" in notice["data"]["reason"]
    assert replayed["data"] == {"n": 1}


def test_lifecycle_events_from_libvirt_name_the_operation_and_who_asked(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}?type=lifecycle&vm=test") as ws:
        answer = client.post("/api/v1/vms/test/pause")
        assert answer.status_code == 202
        event = _receive(ws)
    assert event["type"] == "lifecycle" and event["vm"] == "test"
    assert event["data"]["event"] == "suspended"
    assert event["operation"] == answer.json()["id"] and event["requested_by"] == "local"


def test_operation_progress_reaches_the_stream(client: TestClient) -> None:
    with client.websocket_connect(f"{WS}?type=operation") as ws:
        op = client.post("/api/v1/vms/test/kill").json()
        events = [_receive(ws)]
        while "state" not in events[-1]["data"]:
            events.append(_receive(ws))
    assert {e["operation"] for e in events} == {op["id"]}
    assert events[-1]["data"]["state"] == "succeeded" and events[-1]["requested_by"] == "local"


def test_unknown_types_and_bad_since_are_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(f"{WS}?type=lifecycle,bogus"):
        pass
    assert denied.value.status_code == 422 and "unknown event type bogus" in denied.value.json()["error"]
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(f"{WS}?since=-1") as ws:
        ws.receive_text()
    assert closed.value.code == 1008


def test_the_tcp_door_needs_credentials(app: FastAPI) -> None:
    with TestClient(Marked(app, "tcp")) as tcp, pytest.raises(WebSocketDenialResponse) as denied, \
            tcp.websocket_connect(WS):
        pass
    assert denied.value.status_code == 401 and denied.value.json()["code"] == "auth.required"


@pytest.mark.parametrize(("kind", "event", "expected"), [
    ("lifecycle", "crashed", ("lifecycle", {"event": "crashed", "detail": "panicked"})),
    ("reboot", "rebooted", ("lifecycle", {"event": "rebooted", "detail": None})),
    ("device-added", "net1", ("device", {"event": "added", "device": "net1"})),
    ("device-removed", "ua-disk2", ("device", {"event": "removed", "device": "ua-disk2"})),
    ("balloon", "changed", None),
])
def test_libvirt_events_on_the_bus(kind: str, event: str, expected: object) -> None:
    detail = "panicked" if kind == "lifecycle" else None
    raw = Event(time=0.0, vm="web", uuid="u", kind=kind, event=event, detail=detail)
    assert classify(raw) == expected
