"""``/hosts/local/stats``, ``/hosts/local/vm-stats`` and ``/hosts/local/os``: what `host stats`, `top` and `os`
read through the server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

API = "/api/v1/hosts/local"


def test_host_stats_are_the_managed_hosts(client: TestClient) -> None:
    answer = client.get(f"{API}/stats")
    assert answer.status_code == 200
    stats = answer.json()
    assert stats["uri"] == "test:///default" and stats["vms_defined"] == 1 and stats["vms_running"] == 1


def test_vm_stats_sample_every_vm_sorted(client: TestClient) -> None:
    answer = client.get(f"{API}/vm-stats", params={"interval": 0.05, "sort": "name"})
    assert answer.status_code == 200
    assert [(v["name"], v["state"]) for v in answer.json()] == [("test", "running")]


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"sort": "bogus"}, 400, "cannot sort by 'bogus'"),
    ({"interval": 11}, 422, "interval"),
    ({"interval": -1}, 422, "interval"),
])
def test_bad_vm_stats_queries_are_refused_with_a_reason(client: TestClient, params: dict[str, object], status: int,
                                                        words: str) -> None:
    answer = client.get(f"{API}/vm-stats", params=params)
    assert answer.status_code == status and words in answer.text


def test_os_variants_are_the_hosts_osinfo_db(client: TestClient) -> None:
    found = client.get(f"{API}/os", params={"filter": "debian1"}).json()
    assert found and all("debian1" in o["id"] or "Debian" in o["name"] for o in found)
    profile = client.get(f"{API}/os/debian11").json()
    assert profile["id"] == "debian11" and profile["disk_bus"] == "virtio"
    missing = client.get(f"{API}/os/nosuchos9")
    assert missing.status_code == 400 and "unknown OS variant 'nosuchos9'" in missing.json()["error"]
