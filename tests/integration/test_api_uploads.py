"""A remote client's way to bring an image: send the file with ``PUT /pools/{pool}/volumes/{name}/data``, then
import it with ``POST /images`` and ``media: {"volume": "POOL/NAME"}``; a hostile qcow2 never becomes a volume,
and the bytes read back with ``GET .../data`` are the ones sent."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kvmhub.server.app import create_app
from kvmhub.server.settings import ServerSettings
from kvmhub.server.transport import Marked
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner

VOLS = "/api/v1/pools/default/volumes"


@pytest.fixture(scope="module")
def api(test_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    r = kvmhub("host", "setup", "--no-network")
    assert r.code == 0, r.err + r.out
    with pytest.MonkeyPatch.context() as mp:
        for key, value in test_host.env().items():
            mp.setenv(key, value)
        mp.setenv("KVMHUB_STATE_DIR", str(tmp_path_factory.mktemp("api-state")))
        app = create_app(ServerSettings(uri=test_host.uri, socket=None))
        with TestClient(Marked(app, "unix")) as client:
            yield client


def _qcow2(path: Path, *extra: str) -> bytes:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), "16M"], check=True, timeout=60)
    return path.read_bytes()


def _volumes(api: TestClient) -> list[str]:
    return sorted(v["name"] for v in api.get(VOLS).json())


def test_an_uploaded_file_is_imported_as_an_image(api: TestClient, tmp_path: Path) -> None:
    data = _qcow2(tmp_path / "disk.qcow2")
    sent = api.put(f"{VOLS}/sent.qcow2/data", content=data)
    assert sent.status_code == 201, sent.text
    assert sent.json()["format"] == "qcow2" and sent.json()["capacity_bytes"] == 16 << 20
    back = api.get(f"{VOLS}/sent.qcow2/data")
    assert back.status_code == 200 and back.content == data
    started = api.post("/api/v1/images", json={"name": "sent", "media": {"volume": "default/sent.qcow2"}})
    assert started.status_code == 202, started.text
    done = api.get(f"/api/v1/operations/{started.json()['id']}/wait", params={"timeout": 120}).json()
    assert done["state"] == "succeeded", done["error"]
    image = api.get("/api/v1/images/sent").json()
    assert image["format"] == "qcow2" and image["virtual_bytes"] == 16 << 20 and image["pool"] == "kvmhub-images"
    assert api.delete("/api/v1/images/sent").status_code == 204
    assert api.delete(f"{VOLS}/sent.qcow2").status_code == 204


def test_a_qcow2_naming_a_host_file_is_refused_and_leaves_no_volume(api: TestClient, tmp_path: Path) -> None:
    before = _volumes(api)
    data = _qcow2(tmp_path / "evil.qcow2", "-F", "raw", "-b", "/etc/shadow")
    refused = api.put(f"{VOLS}/evil.qcow2/data", content=data)
    assert refused.status_code == 400 and "backing file (/etc/shadow)" in refused.json()["error"]
    assert _volumes(api) == before
