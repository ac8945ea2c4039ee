"""Networks owned by projects over libvirt's test driver: the record kvmhub keeps of a network's project, the
networks quota, and what rm and a failed create leave of the record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import Conflict, QuotaExceeded
from kvmhub.faults import InjectedFault
from kvmhub.hv import Hypervisor
from kvmhub.hv import networks as hv_networks
from kvmhub.models import ProjectRequest
from kvmhub.ops.journal import connect
from kvmhub.services import projects
from kvmhub.services.network import networks

URI = "test:///default"


@pytest.fixture
def hv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hypervisor]:
    """The test driver with a state directory of its own and only its `default` network, before and after."""
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    with Hypervisor(URI) as h:
        _only_default(h)  # the driver's state is the process's: an earlier module may have left one
        yield h
        _only_default(h)


def _only_default(hv: Hypervisor) -> None:
    for net in hv.conn.listAllNetworks(0):
        if net.name() != "default":
            if net.isActive():
                net.destroy()
            net.undefine()


def _records(hv: Hypervisor) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in connect().execute(
        "SELECT name, project FROM network_projects WHERE uri=? ORDER BY name", (hv.uri,))]


def test_a_network_belongs_to_the_project_it_was_made_in_and_counts_in_its_use(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="web"))
    made = networks.create(hv, "lab1", subnet="10.71.0.0/24", project="web")
    networks.create(hv, "lab2", subnet="10.72.0.0/24", project="web")
    networks.create(hv, "lab3", subnet="10.73.0.0/24")
    assert made.project == "web"
    assert {n.name: n.project for n in networks.list_networks(hv)} == {
        "default": "default", "lab1": "web", "lab2": "web", "lab3": "default"}  # `default` has no record
    assert networks.show(hv, "lab2").project == "web"
    assert projects.get_project("web", hv).use.networks == 2  # type: ignore[union-attr]
    assert projects.get_project("default", hv).use.networks == 2  # type: ignore[union-attr]
    assert [n.name for n in networks.list_networks(hv, only=frozenset({"web"}))] == ["lab1", "lab2"]


def test_networks_quota_refuses_the_next_create_and_defines_nothing(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="web", max_networks=1))
    networks.create(hv, "lab1", subnet="10.71.0.0/24", project="web")
    with pytest.raises(QuotaExceeded) as refused:
        networks.create(hv, "lab2", subnet="10.72.0.0/24", project="web")
    err = refused.value
    assert err.code == "project.quota_exceeded"
    assert err.message == ("project 'web' is over its networks quota: limit 1, in use 1, this request adds 1")
    assert err.hint == ("raise the quota (`kvmhub project set web` --max-networks), or remove networks of the "
                        "project")
    assert not hv_networks.network_exists(hv, "lab2")
    assert _records(hv) == [("lab1", "web")]
    networks.create(hv, "lab2", subnet="10.72.0.0/24")  # the default project has no such quota


def test_rm_drops_the_record_and_the_use(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="web", max_networks=1))
    networks.create(hv, "lab1", subnet="10.71.0.0/24", project="web")
    with pytest.raises(Conflict, match=r"still owns 1 network\(s\): lab1") as kept:
        projects.remove_project(hv, "web")
    assert kept.value.code == "project.not_empty"
    networks.remove(hv, "lab1")
    assert _records(hv) == []
    assert projects.get_project("web", hv).use.networks == 0  # type: ignore[union-attr]
    networks.create(hv, "lab2", subnet="10.72.0.0/24", project="web")  # room again under the quota of 1


def test_a_record_of_another_uuid_is_stale_and_ignored(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="web"))
    networks.create(hv, "lab1", subnet="10.71.0.0/24", project="web")
    net = hv.conn.networkLookupByName("lab1")
    xml = net.XMLDesc(0)
    net.destroy()
    net.undefine()  # removed by another tool, then remade under the same name: a new UUID
    hv.conn.networkDefineXML(xml.replace(net.UUIDString(), "0b6a3c53-8a7b-4a52-9d2c-1c2b5a3e4f60"))
    assert networks.show(hv, "lab1").project == "default"
    assert projects.get_project("web", hv).use.networks == 0  # type: ignore[union-attr]


def test_a_failed_create_undoes_its_network_and_its_record_only(hv: Hypervisor,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    projects.create_project(ProjectRequest(name="web"))
    networks.create(hv, "lab1", subnet="10.71.0.0/24", project="web")
    monkeypatch.setenv("KVMHUB_INJECT_FAULT", "net-start")
    with pytest.raises(InjectedFault):
        networks.create(hv, "lab2", subnet="10.72.0.0/24", project="web")
    assert not hv_networks.network_exists(hv, "lab2")
    assert _records(hv) == [("lab1", "web")]
