"""Functions libvirt's test driver lacks (DHCP leases, volume uploads and downloads) answer 409 ``hv.unsupported``
with the driver's own words as the cause, never 500, and leave nothing behind."""

from __future__ import annotations

import libvirt
from fastapi.testclient import TestClient

from kvmhub.errors import HostProblem, exit_code
from kvmhub.hv.errors import translate
from kvmhub.server.errors import status_of


def _names(client: TestClient) -> list[str]:
    return sorted(v["name"] for v in client.get("/api/v1/pools/default-pool/volumes").json())


def test_reading_leases_the_driver_cannot_give_is_a_409_naming_the_function(client: TestClient) -> None:
    answer = client.get("/api/v1/networks/default/leases")
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["code"] == "hv.unsupported" and body["kind"] == "HostProblem"
    assert body["error"] == "reading DHCP leases (network default): this host's libvirt driver cannot do it"
    assert "not supported by the connection driver: virNetworkGetDHCPLeases" in body["cause"]
    assert "virsh version" in body["hint"]


def test_an_upload_the_driver_cannot_take_is_a_409_and_leaves_no_volume(client: TestClient) -> None:
    before = _names(client)
    answer = client.put("/api/v1/pools/default-pool/volumes/up.raw/data", content=b"\0" * 4096,
                        headers={"content-type": "application/octet-stream"})
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "hv.unsupported"
    assert "virStorageVolUpload" in answer.json()["cause"]
    assert _names(client) == before


def test_unsupported_is_a_host_problem_for_the_cli_and_a_conflict_for_the_api() -> None:
    for code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                 libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
        err = libvirt.libvirtError("this function is not supported by the connection driver: virX")
        err.err = (code, 0, "this function is not supported by the connection driver: virX", 2, "", None, None, 0, 0)
        mapped = translate(err, "doing x")
        assert isinstance(mapped, HostProblem) and mapped.code == "hv.unsupported"
        assert (exit_code(mapped), status_of(mapped)) == (5, 409)
        assert mapped.original == mapped.cause == "this function is not supported by the connection driver: virX"


def test_resizing_or_reading_a_volume_the_driver_cannot_is_a_409_and_the_volume_stays(client: TestClient) -> None:
    vols = "/api/v1/pools/default-pool/volumes"
    made = client.post(vols, json={"name": "kept.raw", "capacity_bytes": 1 << 20, "format": "raw"})
    assert made.status_code == 201, made.text
    try:
        for answer in (client.post(f"{vols}/kept.raw/resize", json={"capacity_bytes": 2 << 20}),
                       client.get(f"{vols}/kept.raw/data")):
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "hv.unsupported", answer.text
            assert "not supported by the connection driver" in answer.json()["cause"]
        assert client.get(f"{vols}/kept.raw").json()["capacity_bytes"] == 1 << 20
    finally:
        assert client.delete(f"{vols}/kept.raw").status_code == 204
