"""Console WebSockets in-process on libvirt's test driver: VNC tokens (single use, expiry, bound to user and VM),
refusals before the upgrade with the usual error body, and roles. The byte pumps run against real guests in
tests/integration/test_server_streams.py."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from kvmhub.server.console_tokens import ConsoleTokens, TokenRefused
from kvmhub.server.transport import Marked
from kvmhub.services.vm.console import _loopback
from kvmhub.xml.graphics import vnc_listen

URI = "test:///default"
EVERY_ADDRESS = "0.0.0.0"  # noqa: S104 - a display listening there is what is refused




def _tokens(client: TestClient) -> ConsoleTokens:
    store: ConsoleTokens = client.app.app.state.console_tokens  # type: ignore[attr-defined]
    return store


def test_a_token_is_spent_by_its_first_use() -> None:
    store = ConsoleTokens()
    grant = store.issue("ann", "web")
    assert store.redeem(grant.token, vm="web", user="ann") == grant
    with pytest.raises(TokenRefused, match="unknown or already used"):
        store.redeem(grant.token)


def test_an_expired_token_is_refused() -> None:
    store = ConsoleTokens(ttl=0.05)
    grant = store.issue("ann", "web")
    time.sleep(0.1)
    with pytest.raises(TokenRefused, match="expired"):
        store.redeem(grant.token)


def test_a_token_is_bound_to_its_vm_and_user_and_a_refused_try_spends_it() -> None:
    store = ConsoleTokens()
    for_vm, for_user = store.issue("ann", "web"), store.issue("ann", "web")
    with pytest.raises(TokenRefused, match="another VM, not db"):
        store.redeem(for_vm.token, vm="db")
    with pytest.raises(TokenRefused, match="another user, not bob"):
        store.redeem(for_user.token, user="bob")
    with pytest.raises(TokenRefused, match="already used"):
        store.redeem(for_vm.token, vm="web")


def test_tokens_are_long_and_distinct() -> None:
    store = ConsoleTokens()
    tokens = {store.issue("ann", "web").token for _ in range(100)}
    assert len(tokens) == 100 and min(len(t) for t in tokens) >= 32


@pytest.mark.parametrize(("xml", "expected"), [
    ("<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/>"
     "</graphics>", ("address", "127.0.0.1")),
    ("<graphics type='vnc' port='5901'/>", ("address", EVERY_ADDRESS)),
    ("<graphics type='vnc'><listen type='socket' socket='/run/vnc.sock'/></graphics>", ("socket", "/run/vnc.sock")),
    ("<graphics type='vnc' socket='/run/vnc.sock'/>", ("socket", "/run/vnc.sock")),
    ("<graphics type='spice'/>", None),
])
def test_where_a_vnc_display_listens(xml: str, expected: tuple[str, str] | None) -> None:
    assert vnc_listen(f"<domain><devices>{xml}</devices></domain>") == expected


@pytest.mark.parametrize(("address", "ok"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                             ("localhost", True), (EVERY_ADDRESS, False), ("192.168.1.5", False),
                                             ("::", False), ("vnc.example", False)])
def test_only_loopback_displays_are_served(address: str, ok: bool) -> None:
    assert _loopback(address) is ok


def test_a_vnc_token_for_a_vm_without_a_display_is_refused(client: TestClient) -> None:
    answer = client.post("/api/v1/vms/test/vnc-token")
    assert answer.status_code == 404 and answer.json()["code"] == "vm.no_display"
    assert client.post("/api/v1/vms/nope/vnc-token").json()["code"] == "vm.not_found"


def test_an_unknown_token_is_refused_before_the_upgrade(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/api/v1/vnc?token=made-up"):
        pass
    assert denied.value.status_code == 401 and denied.value.json()["code"] == "auth.required"


@pytest.mark.parametrize("query", ["", "token=", "token=" + "x" * 300])
def test_a_malformed_token_closes_with_policy_violation(client: TestClient, query: str) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(f"/api/v1/vnc?{query}") as ws:
        ws.receive_bytes()
    assert closed.value.code == 1008


def test_a_token_for_another_vm_or_used_twice_is_refused(client: TestClient) -> None:
    grant = _tokens(client).issue("local", "test")
    with pytest.raises(WebSocketDenialResponse) as denied, \
            client.websocket_connect(f"/api/v1/vnc?token={grant.token}&vm=other"):
        pass
    assert denied.value.status_code == 401 and "another VM" in denied.value.json()["error"]
    with pytest.raises(WebSocketDenialResponse) as again, client.websocket_connect(f"/api/v1/vnc?token={grant.token}"):
        pass
    assert again.value.status_code == 401 and "already used" in again.value.json()["error"]


def test_a_token_of_another_user_is_refused_on_the_local_door(client: TestClient) -> None:
    grant = _tokens(client).issue("ann", "test")
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(f"/api/v1/vnc?token={grant.token}"):
        pass
    assert denied.value.status_code == 401 and "another user, not local" in denied.value.json()["error"]


def test_a_valid_token_for_a_vm_whose_display_is_gone_says_why(client: TestClient) -> None:
    grant = _tokens(client).issue("local", "test")
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(f"/api/v1/vnc?token={grant.token}"):
        pass
    assert denied.value.status_code == 404 and denied.value.json()["code"] == "vm.no_display"


def test_the_serial_console_of_a_vm_that_is_missing_or_stopped_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as missing, client.websocket_connect("/api/v1/vms/nope/console"):
        pass
    assert missing.value.status_code == 404 and missing.value.json()["code"] == "vm.not_found"
    client.post("/api/v1/vms/test/kill")
    client.get("/api/v1/operations/" + client.get("/api/v1/operations").json()[0]["id"] + "/wait")
    with pytest.raises(WebSocketDenialResponse) as stopped, client.websocket_connect("/api/v1/vms/test/console"):
        pass
    assert stopped.value.status_code == 409 and stopped.value.json()["error"] == "VM test is not running"


def test_consoles_need_credentials_on_tcp(app: FastAPI) -> None:
    with TestClient(Marked(app, "tcp")) as tcp:
        with pytest.raises(WebSocketDenialResponse) as denied, tcp.websocket_connect("/api/v1/vms/test/console"):
            pass
        assert denied.value.status_code == 401
        assert tcp.post("/api/v1/vms/test/vnc-token").status_code == 401


def test_a_display_listening_beyond_loopback_is_refused_naming_why(client: TestClient) -> None:
    conn = client.app.app.state.hv.conn  # type: ignore[attr-defined]
    conn.defineXML(f"""<domain type='test'><name>exposed</name><memory>65536</memory><vcpu>1</vcpu>
        <os><type>hvm</type></os><devices><graphics type='vnc' port='5910' listen='{EVERY_ADDRESS}'/></devices>
        </domain>""").create()
    answer = client.post("/api/v1/vms/exposed/vnc-token")
    assert answer.status_code == 409 and answer.json()["code"] == "vm.display_exposed"
    body = answer.json()
    assert body["error"] == f"the VNC display of exposed listens on {EVERY_ADDRESS}, not on loopback"
    assert "without kvmhub's tokens" in body["cause"]
