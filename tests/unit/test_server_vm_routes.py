"""The VM-side REST routes in-process over libvirt's test driver: create, clone, set, ip, save/restore,
snapshots, backups, disks, NICs, export/import. A missing VM, snapshot, disk or NIC is a 404 before any
operation starts; a bad body is a 4xx that changes nothing; an operation that fails carries the service's code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from kvmhub.hv import Hypervisor

URI = "test:///default"  # its built-in VM "test" starts out running, with disk vda and one NIC
TEST_MAC = "aa:bb:cc:dd:ee:ff"


@pytest.fixture(autouse=True)
def test_vm_running_again() -> Iterator[None]:
    """The test driver's state lasts as long as the process: leave its VM running for the tests after these."""
    yield
    with Hypervisor(URI) as hv:
        dom = hv.conn.lookupByName("test")
        if dom.hasManagedSaveImage(0):
            dom.managedSaveRemove(0)
        if dom.state()[0] == 3:  # paused
            dom.resume()
        elif not dom.isActive():
            dom.create()



def _finished(client: TestClient, answer: Response, kind: str) -> dict[str, Any]:
    assert answer.status_code == 202, answer.text
    op = answer.json()
    assert op["kind"] == kind and answer.headers["location"] == f"/api/v1/operations/{op['id']}"
    done: dict[str, Any] = client.get(f"/api/v1/operations/{op['id']}/wait", params={"timeout": 90}).json()
    assert done["state"] in ("succeeded", "failed"), done
    return done


def _failed_with(done: dict[str, Any], code: str, words: str) -> None:
    assert done["state"] == "failed" and done["result"] is None, done
    assert done["error"]["code"] == code and words in done["error"]["message"], done["error"]


def _refused(answer: Response, status: int, code: str, words: str = "") -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert {"code", "error", "cause", "hint", "detail"} <= set(body)
    assert body["code"] == code and words in body["error"], body


def _unchanged(client: TestClient) -> None:
    """The test VM as the driver starts it, and no operation started."""
    vms = client.get("/api/v1/vms").json()
    assert [(v["name"], v["state"]) for v in vms] == [("test", "running")]
    assert client.get("/api/v1/operations").json() == []


# -- create, clone, set, ip ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "code", "words"), [
    ({"name": "test", "image": "tiny"}, 409, "name.taken", "a VM named 'test' already exists"),
    ({"name": "../etc", "image": "tiny"}, 400, "input.invalid_name", "invalid VM name"),
    ({"name": "n1", "image": "tiny", "memory": "lots"}, 400, "input.invalid_size", "invalid memory 'lots'"),
    ({"name": "n1", "image": "tiny", "cpus": 0}, 400, "input.invalid", "cpus"),
    ({"name": "n1", "image": "tiny", "colour": "red"}, 422, "input.invalid", "colour"),
    ({"image": "tiny"}, 422, "input.invalid", "name"),
    ({"name": "n1", "iso": {"path": "/a.iso", "volume": "p/v"}}, 422, "input.invalid", "exactly one of path"),
])
def test_create_refuses_a_bad_request_at_once(client: TestClient, body: dict[str, Any], status: int, code: str,
                                              words: str) -> None:
    _refused(client.post("/api/v1/vms", json=body), status, code, words)
    _unchanged(client)


def test_create_runs_as_an_operation_whose_failure_carries_the_services_code(client: TestClient) -> None:
    done = _finished(client, client.post("/api/v1/vms", json={"name": "n1", "image": "tiny"}), "vm.create")
    _failed_with(done, "pool.not_found", "no storage pool")  # the test driver has none of kvmhub's pools
    assert done["target"] == "n1"
    assert client.get("/api/v1/vms/n1").status_code == 404


def test_clone(client: TestClient) -> None:
    _refused(client.post("/api/v1/vms/nope/clone", json={"name": "c1"}), 404, "vm.not_found", "nope")
    _refused(client.post("/api/v1/vms/test/clone", json={"name": "test"}), 409, "name.taken")
    _refused(client.post("/api/v1/vms/test/clone", json={"name": "c1", "source": "x"}), 422, "input.invalid",
             "source")
    done = _finished(client, client.post("/api/v1/vms/test/clone", json={"name": "c1", "linked": True}),
                     "vm.clone")
    _failed_with(done, "vm.wrong_state", "cannot clone VM test: it is running")
    assert done["target"] == "c1" and client.get("/api/v1/vms/c1").status_code == 404


def test_patch_answers_each_change_and_when_it_takes_effect(client: TestClient) -> None:
    answer = client.patch("/api/v1/vms/test", json={"autostart": True})
    assert answer.status_code == 200, answer.text
    assert answer.json() == [{"setting": "autostart", "value": "on", "live": True, "note": ""}]
    assert client.get("/api/v1/vms/test").json()["autostart"] is True
    answer = client.patch("/api/v1/vms/test", json={"autostart": False})
    assert answer.json() == [{"setting": "autostart", "value": "off", "live": True, "note": ""}]
    assert client.get("/api/v1/vms/test").json()["autostart"] is False


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("test", {"memory": "lots"}, 400, "input.invalid_size"),
    ("test", {"cpus": "many"}, 422, "input.invalid"),
    ("test", {"autostart": True, "turbo": True}, 422, "input.invalid"),
    ("nope", {"autostart": True}, 404, "vm.not_found"),
])
def test_patch_refuses_bad_values_and_changes_nothing(client: TestClient, name: str, body: dict[str, Any],
                                                      status: int, code: str) -> None:
    before = client.get("/api/v1/vms/test").json()
    _refused(client.patch(f"/api/v1/vms/{name}", json=body), status, code)
    assert client.get("/api/v1/vms/test").json() == before


def test_ip_lists_the_vms_addresses_and_their_source(client: TestClient) -> None:
    shown = client.get("/api/v1/vms/test").json()["ips"]  # the test driver's lease follows the VM's id
    assert client.get("/api/v1/vms/test/ip").json() == [
        {"ip": shown[0], "prefix": 24, "mac": TEST_MAC, "iface": "testnet0", "source": "lease"}]
    assert shown[0].startswith("192.168.122.")
    _refused(client.get("/api/v1/vms/nope/ip"), 404, "vm.not_found")


def test_save_then_restore(client: TestClient) -> None:
    done = _finished(client, client.post("/api/v1/vms/test/save"), "vm.save")
    assert done["state"] == "succeeded" and done["result"]["state"] == "shut off", done
    done = _finished(client, client.post("/api/v1/vms/test/restore"), "vm.restore")
    assert done["state"] == "succeeded" and done["result"]["state"] == "running", done
    again = _finished(client, client.post("/api/v1/vms/test/restore"), "vm.restore")
    _failed_with(again, "vm.wrong_state", "it is running")
    _refused(client.post("/api/v1/vms/nope/save"), 404, "vm.not_found")


# -- snapshots, backups -------------------------------------------------------------------------------------


def test_snapshots(client: TestClient) -> None:
    assert client.get("/api/v1/vms/test/snapshots").json() == []
    _refused(client.get("/api/v1/vms/nope/snapshots"), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/nope/snapshots", json={}), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/test/snapshots", json={"memory": "maybe"}), 422, "input.invalid", "memory")
    _refused(client.post("/api/v1/vms/test/snapshots", json={"vm": "other"}), 422, "input.invalid", "vm")
    for answer in (client.post("/api/v1/vms/test/snapshots/s1/revert"), client.delete("/api/v1/vms/test/snapshots/s1"),
                   client.get("/api/v1/vms/test/snapshots/s1")):
        _refused(answer, 404, "snapshot.not_found", "VM test has no snapshot 's1'")
    assert client.get("/api/v1/operations").json() == []
    done = _finished(client, client.post("/api/v1/vms/test/snapshots", json={"name": "s1", "disk_only": True}),
                     "snapshot.create")
    _failed_with(done, "libvirt.refused", "taking a snapshot of test")  # the test driver takes none
    assert client.get("/api/v1/vms/test/snapshots").json() == []


def test_backups(client: TestClient, tmp_path: Path) -> None:
    where = tmp_path / "backups"
    where.mkdir()
    assert client.get("/api/v1/vms/test/backups").json() == []
    _refused(client.get("/api/v1/vms/nope/backups"), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/nope/backups", json={"directory": str(where)}), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/test/backups", json={}), 422, "input.invalid", "directory")
    _refused(client.post("/api/v1/backups/restore", json={"vm": "nope", "directory": str(where)}), 404,
             "vm.not_found")
    _refused(client.post("/api/v1/backups/restore", json={"vm": "test", "directory": str(where),
                                                          "as_name": "a/b"}), 400, "input.invalid_name")
    done = _finished(client, client.post("/api/v1/vms/test/backups", json={"directory": str(where)}),
                     "backup.create")
    _failed_with(done, "host.problem", "backups need the VM's host to be this machine")
    done = _finished(client, client.post("/api/v1/backups/restore", json={"vm": "test", "directory": str(where)}),
                     "backup.restore")
    _failed_with(done, "host.problem", "backups need the VM's host to be this machine")
    assert list(where.iterdir()) == []


# -- disks, NICs --------------------------------------------------------------------------------------------


def test_disks(client: TestClient) -> None:
    listed = client.get("/api/v1/vms/test/disks").json()
    assert [(d["target"], d["bus"], d["source"]) for d in listed] == [("vda", "virtio", "/guest/diskimage1")]
    _refused(client.get("/api/v1/vms/nope/disks"), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/nope/disks", json={"size": "1G"}), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/test/disks", json={"size": "1G", "bus": "floppy"}), 422, "input.invalid")
    _refused(client.post("/api/v1/vms/test/disks", json={"size": "big"}), 400, "input.invalid_size")
    _refused(client.delete("/api/v1/vms/test/disks/vdz"), 404, "disk.not_found", "VM test has no disk 'vdz'")
    _refused(client.post("/api/v1/vms/test/disks/vdz/resize", json={"size": "2G"}), 404, "disk.not_found")
    _refused(client.post("/api/v1/vms/test/disks/vda/resize", json={}), 422, "input.invalid", "size")
    assert client.delete("/api/v1/vms/test/disks/..%2Fvda").status_code in (404, 422)
    assert client.get("/api/v1/operations").json() == []
    done = _finished(client, client.post("/api/v1/vms/test/disks", json={"size": "1G"}), "disk.add")
    _failed_with(done, "pool.not_found", "no storage pool")
    done = _finished(client, client.post("/api/v1/vms/test/disks/vda/resize", json={"size": "2G"}), "disk.resize")
    _failed_with(done, "input.invalid", "cannot shrink vda of test")
    assert client.get("/api/v1/vms/test/disks").json() == listed


def test_nics(client: TestClient) -> None:
    listed = client.get("/api/v1/vms/test/nics").json()
    assert [(n["network"], n["mac"], n["model"]) for n in listed] == [("default", TEST_MAC, "virtio")]
    _refused(client.get("/api/v1/vms/nope/nics"), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/test/nics", json={"network": "default", "model": "ne2k"}), 422,
             "input.invalid", "model")
    _refused(client.delete("/api/v1/vms/test/nics/52:54:00:00:00:01"), 404, "nic.not_found")
    _refused(client.delete("/api/v1/vms/test/nics/not-a-mac"), 422, "input.invalid")
    assert client.get("/api/v1/operations").json() == []
    done = _finished(client, client.post("/api/v1/vms/test/nics", json={"network": "default"}), "nic.add")
    # the test driver keeps no leases
    _failed_with(done, "hv.unsupported", "reading DHCP leases (network default): this host's libvirt driver cannot")
    assert client.get("/api/v1/vms/test/nics").json() == listed


# -- export, import -----------------------------------------------------------------------------------------


def test_export_and_import(client: TestClient) -> None:
    _refused(client.post("/api/v1/vms/nope/export"), 404, "vm.not_found")
    _refused(client.post("/api/v1/vms/test/export", json={"to": "/etc/x.tar.gz"}), 422, "input.invalid", "to")
    _refused(client.post("/api/v1/vms/import", json={"media": {}}), 422, "input.invalid", "exactly one of path")
    _refused(client.post("/api/v1/vms/import", json={"media": {"path": "/x"}, "as_name": "a b"}), 400,
             "input.invalid_name")
    done = _finished(client, client.post("/api/v1/vms/test/export", json={"compress": True}), "vm.export")
    _failed_with(done, "vm.wrong_state", "cannot export VM test: it is running")
    done = _finished(client, client.post("/api/v1/vms/import", json={"media": {"path": "/nonexistent.tar.gz"}}),
                     "vm.import")
    _failed_with(done, "not_found", "no export file /nonexistent.tar.gz")
    assert [v["name"] for v in client.get("/api/v1/vms").json()] == ["test"]


def test_openapi_has_every_vm_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    wanted = {
        "/api/v1/vms": {"get", "post"}, "/api/v1/vms/{name}": {"get", "patch", "delete"},
        "/api/v1/vms/{name}/clone": {"post"}, "/api/v1/vms/{name}/ip": {"get"},
        "/api/v1/vms/{name}/save": {"post"}, "/api/v1/vms/{name}/restore": {"post"},
        "/api/v1/vms/{name}/snapshots": {"get", "post"}, "/api/v1/vms/{name}/snapshots/{snap}": {"get", "delete"},
        "/api/v1/vms/{name}/snapshots/{snap}/revert": {"post"}, "/api/v1/vms/{name}/backups": {"get", "post"},
        "/api/v1/backups/restore": {"post"}, "/api/v1/vms/{name}/disks": {"get", "post"},
        "/api/v1/vms/{name}/disks/{target}": {"delete"}, "/api/v1/vms/{name}/disks/{target}/resize": {"post"},
        "/api/v1/vms/{name}/nics": {"get", "post"}, "/api/v1/vms/{name}/nics/{mac}": {"delete"},
        "/api/v1/vms/{name}/export": {"post"}, "/api/v1/vms/import": {"post"},
    }
    for path, methods in wanted.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert paths[path][method]["description"], (path, method)
