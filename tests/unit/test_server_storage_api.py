"""The storage routes over libvirt's test driver: pools, volumes (and what an upload refuses before any byte is
stored), images, hosts and metrics. Bad input is a 4xx with the service's code, and changes nothing."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kvmhub.errors import InvalidInput
from kvmhub.services.storage.volume_streams import Reader, check_head
from tests.unit.testdriver_state import URI, api_client

POOL = "/api/v1/pools/default-pool"
VOLS = f"{POOL}/volumes"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with api_client(tmp_path, monkeypatch) as c:
        yield c


def _done(client: TestClient, answer: httpx.Response) -> dict[str, object]:
    assert answer.status_code == 202, answer.text
    op = answer.json()
    assert answer.headers["location"] == f"/api/v1/operations/{op['id']}"
    done = client.get(f"/api/v1/operations/{op['id']}/wait", params={"timeout": 20}).json()
    assert isinstance(done, dict)
    return done


def _volumes(client: TestClient) -> list[str]:
    return sorted(v["name"] for v in client.get(VOLS).json())


def qcow2_header(*, version: int = 3, backing: bytes = b"", crypt: int = 0, incompatible: int = 0) -> bytes:
    """A qcow2 header (with its backing file name after it) as qemu-img writes one."""
    head = struct.pack(">4sIQIIQIIQQIIQQQQII", b"QFI\xfb", version, 104 if backing else 0, len(backing), 16,
                       1 << 30, crypt, 1, 0x30000, 0x10000, 1, 0, 0, incompatible, 0, 0, 4, 104)
    return head + backing + b"\0" * (512 - len(head) - len(backing))


# --- hosts and metrics -------------------------------------------------------------------------------------

def test_hosts_lists_the_one_host_with_its_versions(client: TestClient) -> None:
    [host] = client.get("/api/v1/hosts").json()
    assert host["name"] == "local" and host["uri"] == URI and host["hostname"]
    assert host["libvirt_version"].count(".") == 2 and host["accelerator"] is None  # the test driver is not probed


def test_metrics_are_prometheus_text_naming_the_vms(client: TestClient) -> None:
    answer = client.get("/api/v1/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert 'kvmhub_vm_running{vm="test"} 1.0' in answer.text
    assert "# TYPE kvmhub_vm_info gauge" in answer.text


# --- pools -------------------------------------------------------------------------------------------------

def test_pools_list_show_and_a_missing_one(client: TestClient) -> None:
    assert [p["name"] for p in client.get("/api/v1/pools").json()] == ["default-pool"]
    shown = client.get(POOL).json()
    assert shown["state"] == "active" and shown["path"] == "/default-pool"
    missing = client.get("/api/v1/pools/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "pool.not_found"


def test_a_pool_is_created_and_removed_by_operations(client: TestClient) -> None:
    done = _done(client, client.post("/api/v1/pools", json={"name": "extra", "type": "dir", "path": "/extra"}))
    assert done["state"] == "succeeded" and done["kind"] == "pool.create", done
    assert isinstance(done["result"], dict) and done["result"]["state"] == "active"
    assert client.get("/api/v1/pools/extra").json()["autostart"] is True
    done = _done(client, client.delete("/api/v1/pools/extra", params={"delete_data": True}))
    assert done["state"] == "succeeded", done
    assert client.get("/api/v1/pools/extra").status_code == 404
    assert client.delete("/api/v1/pools/extra").status_code == 404  # gone: refused before any operation


def test_pool_state_changes_and_their_conflicts(client: TestClient) -> None:
    again = client.post(f"{POOL}/start")
    assert again.status_code == 409 and "already active" in again.json()["error"]
    assert client.post(f"{POOL}/stop").json()["state"] == "inactive"
    inactive = client.get(VOLS)
    assert inactive.status_code == 409 and inactive.json()["code"] == "pool.inactive"
    assert client.post(f"{POOL}/refresh").status_code == 409
    assert client.post(f"{POOL}/start").json()["state"] == "active"
    assert client.post(f"{POOL}/refresh").json()["volumes"] == 0


@pytest.mark.parametrize("body", [
    {"name": "x", "type": "floppy"},
    {"name": "x", "type": "dir", "path": "/x", "colour": "red"},
    {"type": "dir"},
])
def test_a_malformed_pool_is_422_and_nothing_is_made(client: TestClient, body: dict[str, object]) -> None:
    answer = client.post("/api/v1/pools", json=body)
    assert answer.status_code == 422 and answer.json()["code"] == "input.invalid"
    assert [p["name"] for p in client.get("/api/v1/pools").json()] == ["default-pool"]
    assert client.get("/api/v1/operations").json() == []


def test_a_pool_name_that_leaves_its_place_is_refused(client: TestClient) -> None:
    answer = client.post("/api/v1/pools", json={"name": "../x", "type": "dir", "path": "/x"})
    assert answer.status_code == 400 and answer.json()["code"] == "input.invalid_name"
    assert client.get("/api/v1/operations").json() == []


# --- volumes -----------------------------------------------------------------------------------------------

def test_volumes_created_listed_shown_cloned_removed(client: TestClient) -> None:
    made = client.post(VOLS, json={"name": "a.qcow2", "capacity_bytes": 1 << 20})
    assert made.status_code == 201, made.text
    assert made.headers["location"] == f"{VOLS}/a.qcow2"
    assert made.json()["format"] == "qcow2" and made.json()["capacity_bytes"] == 1 << 20
    assert client.get(f"{VOLS}/a.qcow2").json()["path"] == "/default-pool/a.qcow2"
    done = _done(client, client.post(f"{VOLS}/a.qcow2/clone", json={"target": "b.qcow2"}))
    assert done["state"] == "succeeded" and done["kind"] == "volume.clone", done
    assert _volumes(client) == ["a.qcow2", "b.qcow2"]
    taken = client.post(VOLS, json={"name": "b.qcow2", "capacity_bytes": 1 << 20})
    assert taken.status_code == 409 and taken.json()["code"] == "name.taken"
    assert client.delete(f"{VOLS}/b.qcow2").status_code == 204
    gone = client.get(f"{VOLS}/b.qcow2")
    assert gone.status_code == 404 and gone.json()["code"] == "volume.not_found"
    assert _volumes(client) == ["a.qcow2"]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "x\x00y"])
def test_volume_names_that_leave_the_pool_are_refused(client: TestClient, name: str) -> None:
    answer = client.post(VOLS, json={"name": name, "capacity_bytes": 1 << 20})
    assert answer.status_code == 400 and answer.json()["code"] == "input.invalid", answer.text
    clone = client.post(f"{VOLS}/nope/clone", json={"target": name})
    assert clone.status_code in (400, 404)
    assert _volumes(client) == []


@pytest.mark.parametrize("path", [f"{VOLS}/..%2F..%2Fetc%2Fpasswd", f"{VOLS}/a%2Fb", f"{VOLS}/../x"])
def test_traversal_in_a_volume_path_is_not_found(client: TestClient, path: str) -> None:
    assert client.get(path).status_code in (404, 422)
    assert client.get(f"{path}/data").status_code in (404, 422)
    assert client.delete(path).status_code in (404, 405, 422)


@pytest.mark.parametrize("body", [
    {"name": "v", "capacity_bytes": 0},
    {"name": "v", "capacity_bytes": -5},
    {"name": "v", "capacity_bytes": 1 << 20, "format": "vmdk"},
    {"name": "v", "capacity_bytes": "ten"},
    {"name": "v", "size": 10},
])
def test_a_malformed_volume_is_422(client: TestClient, body: dict[str, object]) -> None:
    answer = client.post(VOLS, json=body)
    assert answer.status_code == 422 and answer.json()["code"] == "input.invalid"
    assert _volumes(client) == []


def test_resize_validates_its_body_and_needs_the_volume(client: TestClient) -> None:
    assert client.post(f"{VOLS}/nope/resize", json={"capacity_bytes": 0}).status_code == 422
    missing = client.post(f"{VOLS}/nope/resize", json={"capacity_bytes": 1 << 30})
    assert missing.status_code == 404 and missing.json()["code"] == "volume.not_found"


def test_a_volume_in_a_missing_pool_is_a_404(client: TestClient) -> None:
    answer = client.post("/api/v1/pools/nope/volumes", json={"name": "a", "capacity_bytes": 1 << 20})
    assert answer.status_code == 404 and answer.json()["code"] == "pool.not_found"
    assert client.get("/api/v1/pools/nope/volumes/a/data").status_code == 404


# --- upload and download -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "query", "said"), [
    (qcow2_header(backing=b"/etc/shadow"), {}, "refers to a backing file (/etc/shadow)"),
    (qcow2_header(crypt=2), {}, "is encrypted"),
    (qcow2_header(incompatible=1 << 2), {}, "has an external data file"),
    (qcow2_header(), {"format": "raw"}, "starts with a qcow2 header but was sent as raw"),
    (b"# Disk DescriptorFile\nversion=1\nRW 8 FLAT \"/etc/shadow\" 0\n", {}, "is vmdk-descriptor"),
    (b"\x00" * 4096, {"format": "qcow2"}, "has no qcow2 header"),
])
def test_an_upload_with_a_hostile_or_mislabelled_header_is_refused_before_a_volume_exists(
        client: TestClient, body: bytes, query: dict[str, str], said: str) -> None:
    answer = client.put(f"{VOLS}/up.img/data", content=body, params=query)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "input.invalid" and said in answer.json()["error"]
    assert _volumes(client) == []


def test_an_upload_is_not_held_to_the_json_body_limit_but_to_the_pool(client: TestClient) -> None:
    big = qcow2_header(backing=b"/etc/passwd") + b"\0" * (2 << 20)  # over 1 MiB: refused for its header, not 413
    answer = client.put(f"{VOLS}/big.img/data", content=big)
    assert answer.status_code == 400 and "backing file" in answer.json()["error"]
    json_too_big = client.post(VOLS, content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert json_too_big.status_code == 413
    over = client.put(f"{VOLS}/big.img/data", content=b"x" * 16, headers={"content-length": str(1 << 50)})
    assert over.status_code == 503 and over.json()["code"] == "host.no_space"
    assert "available 100G" in over.json()["error"]
    assert _volumes(client) == []


def test_an_upload_without_a_length_or_a_body_is_refused(client: TestClient) -> None:
    chunked = client.put(f"{VOLS}/x.img/data", content=iter([b"x" * 10]))
    assert chunked.status_code == 411 and chunked.json()["code"] == "input.length_required"
    empty = client.put(f"{VOLS}/x.img/data", content=b"")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]
    assert _volumes(client) == []


def test_an_upload_over_an_existing_volume_or_into_a_missing_pool_is_refused(client: TestClient) -> None:
    assert client.post(VOLS, json={"name": "a.raw", "capacity_bytes": 1 << 20, "format": "raw"}).status_code == 201
    taken = client.put(f"{VOLS}/a.raw/data", content=b"x" * 10)
    assert taken.status_code == 409 and taken.json()["code"] == "name.taken"
    missing = client.put("/api/v1/pools/nope/volumes/a.raw/data", content=b"x" * 10)
    assert missing.status_code == 404 and missing.json()["code"] == "pool.not_found"
    bad = client.put(f"{VOLS}/.x/data", content=b"x" * 10)
    assert bad.status_code == 400
    assert _volumes(client) == ["a.raw"]


def test_check_head_takes_clean_qcow2_and_raw() -> None:
    assert check_head(qcow2_header(), None, "t") == "qcow2"
    assert check_head(qcow2_header(version=2)[:72], "qcow2", "t") == "qcow2"
    assert check_head(b"\xeb\x63\x90" + b"\0" * 509, None, "t") == "raw"
    with pytest.raises(InvalidInput, match="cut short"):
        check_head(qcow2_header()[:80], None, "t")


def test_reader_hands_out_exactly_what_is_asked() -> None:
    chunks = iter([b"abc", b"", b"defgh"])
    reader = Reader(lambda: next(chunks, b""))
    assert reader.read(2) == b"ab"
    assert reader.read(10) == b"c"  # the source ended early: what there was
    assert reader.read(4) == b""


# --- images ------------------------------------------------------------------------------------------------

def test_images_need_their_pool_and_refuse_bad_requests(client: TestClient) -> None:
    no_store = client.get("/api/v1/images")
    assert no_store.status_code == 404 and no_store.json()["code"] == "pool.not_found"
    done = _done(client, client.post("/api/v1/pools", json={"name": "kvmhub-images", "type": "dir",
                                                             "path": "/kvmhub-images"}))
    assert done["state"] == "succeeded", done
    assert client.get("/api/v1/images").json() == []
    missing = client.get("/api/v1/images/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "image.not_found"
    assert client.delete("/api/v1/images/nope").status_code == 404
    both = client.post("/api/v1/images", json={"name": "i", "url": "http://h/x.qcow2", "media": {"path": "/x"}})
    assert both.status_code == 422 and "exactly one of url or media" in both.json()["error"]
    traversal = client.post("/api/v1/images", json={"name": "../x", "url": "http://h/x.qcow2"})
    assert traversal.status_code == 400 and traversal.json()["code"] == "input.invalid_name"
    no_volume = client.post("/api/v1/images", json={"name": "i", "media": {"volume": "default-pool/nope.raw"}})
    assert no_volume.status_code == 404 and no_volume.json()["code"] == "volume.not_found"
    assert "image.import" not in [op["kind"] for op in client.get("/api/v1/operations").json()]


def test_a_failing_import_is_a_failed_operation_carrying_the_services_code(client: TestClient) -> None:
    _done(client, client.post("/api/v1/pools", json={"name": "kvmhub-images", "type": "dir",
                                                      "path": "/kvmhub-images"}))
    done = _done(client, client.post("/api/v1/images", json={"name": "i", "media": {"path": "/nonexistent.qcow2"}}))
    assert done["state"] == "failed" and done["kind"] == "image.import"
    assert isinstance(done["error"], dict) and done["error"]["code"] == "input.invalid"
    assert client.get("/api/v1/images").json() == []
