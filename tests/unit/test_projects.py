"""Projects over libvirt's test driver: their records, what their VMs use, quota refusals, and a quota of one VM
that two creates at once cannot both slip under."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.errors import Conflict, NotFound, QuotaExceeded, render
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.models import ProjectQuota, ProjectRequest, ProjectUse, SetRequest
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.services import projects
from kvmhub.services.storage import disks
from kvmhub.services.vm import lifecycle, tuning

URI = "test:///default"
MIB = 1024**2


def vm_xml(name: str, project: str | None, *, vcpus: int = 2, memory_mib: int = 256, max_vcpus: int | None = None,
           volume: str | None = None) -> str:
    """A test-driver domain; ``project`` goes in its kvmhub metadata (none at all when None)."""
    meta = "" if project is None else (
        '<metadata><kvmhub:vm xmlns:kvmhub="https://kvmhub.dev/xmlns/1">'
        f"<kvmhub:project>{project}</kvmhub:project></kvmhub:vm></metadata>")
    vcpu = f"<vcpu current='{vcpus}'>{max_vcpus}</vcpu>" if max_vcpus else f"<vcpu>{vcpus}</vcpu>"
    disk = "" if volume is None else (
        f"<devices><disk type='volume' device='disk'><source pool='default-pool' volume='{volume}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices>")
    return (f"<domain type='test'><name>{name}</name>{meta}<memory unit='MiB'>{memory_mib}</memory>{vcpu}"
            f"<os><type>hvm</type></os>{disk}</domain>")


@pytest.fixture
def hv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hypervisor]:
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    with Hypervisor(URI) as h:
        yield h


@pytest.fixture
def volume(hv: Hypervisor) -> Iterator[str]:
    """A 3 GiB volume in the test driver's pool, removed afterwards."""
    pool = hv.conn.storagePoolLookupByName("default-pool")
    vol = pool.createXML("<volume><name>w1.img</name><capacity unit='GiB'>3</capacity></volume>", 0)
    yield "w1.img"
    vol.delete(0)


def test_default_always_exists_and_owns_vms_whose_metadata_names_no_project(hv: Hypervisor) -> None:
    assert [p.name for p in projects.list_projects()] == ["default"]
    hv_domains.define(hv, vm_xml("plain", None))
    assert projects.vm_project(hv, "plain") == "default"
    assert projects.vm_project(hv, "test") == "default"  # the driver's own VM, made by no kvmhub
    assert lifecycle.show(hv, "plain").project == "default"
    with pytest.raises(Conflict, match="cannot be removed"):
        projects.remove_project(hv, "default")


def test_records_quotas_and_members(hv: Hypervisor) -> None:
    made = projects.create_project(ProjectRequest(name="web", max_vms=3, max_memory=2 * 1024**3))
    assert (made.quota.max_vms, made.quota.max_memory, made.quota.max_cpus) == (3, 2 * 1024**3, None)
    with pytest.raises(Conflict, match="exists already"):
        projects.create_project(ProjectRequest(name="web"))
    changed = projects.set_quota("web", ProjectQuota(max_cpus=8, max_vms=None))
    assert (changed.quota.max_vms, changed.quota.max_cpus, changed.quota.max_memory) == (None, 8, 2 * 1024**3)
    accounts.add_user("alice", Role.OPERATOR, "correct horse battery")
    assert projects.add_member("web", "alice").members == ["alice"]
    assert projects.member_of("alice") == ["web"]
    with pytest.raises(NotFound, match="no user named 'carol'"):
        projects.add_member("web", "carol")
    assert projects.remove_member("web", "alice").members == []
    with pytest.raises(NotFound) as missing:
        projects.get_project("nope")
    assert missing.value.code == "project.not_found"


def test_use_counts_the_projects_vms_max_vcpus_memory_and_disk_capacity(hv: Hypervisor, volume: str) -> None:
    projects.create_project(ProjectRequest(name="web"))
    hv_domains.define(hv, vm_xml("w1", "web", vcpus=1, max_vcpus=4, memory_mib=512, volume=volume))
    hv_domains.define(hv, vm_xml("w2", "web", vcpus=2, memory_mib=256))
    hv_domains.define(hv, vm_xml("other", None, vcpus=8))
    assert projects.use(hv, "web") == ProjectUse(vms=2, cpus=6, memory=768 * MIB, disk=3 * 1024**3)
    shown = projects.get_project("web", hv)
    assert shown.use == ProjectUse(vms=2, cpus=6, memory=768 * MIB, disk=3 * 1024**3)
    assert {v.name: v.project for v in lifecycle.list_vms(hv)} == {"w1": "web", "w2": "web", "other": "default",
                                                                   "test": "default"}
    with pytest.raises(Conflict, match=r"still owns 2 VM\(s\): w1, w2") as refused:
        projects.remove_project(hv, "web")
    assert refused.value.code == "project.not_empty"


def test_a_refusal_names_the_quota_its_limit_the_use_and_what_the_request_adds(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="web", max_memory=640 * MIB, max_vms=5))
    hv_domains.define(hv, vm_xml("w1", "web", memory_mib=512))
    projects.check(hv, "web", ProjectUse(vms=1, memory=128 * MIB))  # exactly up to the limit
    with pytest.raises(QuotaExceeded) as refused:
        projects.check(hv, "web", ProjectUse(vms=1, cpus=1, memory=256 * MIB))
    err = refused.value
    assert err.code == "project.quota_exceeded"
    assert err.message == ("project 'web' is over its memory quota: limit 640 MiB, in use 512 MiB, "
                           "this request adds 256 MiB")
    assert err.hint == "raise the quota (`kvmhub project set web` --max-memory), or remove VMs of the project"
    assert render(err.to_dict("api")["hint"] or "", "api") == (
        "raise the quota (`PATCH /api/v1/projects/web` max_memory), or remove VMs of the project")


def _create_like(hv: Hypervisor, name: str, outcome: dict[str, str]) -> None:
    """What create does with the project: check the quota and define, under the project's lock."""
    try:
        with Operation(hv, "vm.create", name, locks=[LockSpec("vm", name), projects.lock("solo")]) as op:
            projects.check(hv, "solo", ProjectUse(vms=1, cpus=1, memory=256 * MIB))
            time.sleep(0.3)  # the other create runs meanwhile: without the lock it would pass its check too
            op.add(f"undefine {name}")
            hv_domains.define(hv, vm_xml(name, "solo", vcpus=1))
            op.success()
        outcome[name] = "made"
    except QuotaExceeded as exc:
        outcome[name] = exc.code


def test_two_creates_at_once_against_a_quota_of_one_vm_one_is_refused(hv: Hypervisor) -> None:
    projects.create_project(ProjectRequest(name="solo", max_vms=1))
    outcome: dict[str, str] = {}
    threads = [threading.Thread(target=_create_like, args=(hv, n, outcome)) for n in ("s1", "s2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcome.values()) == ["made", "project.quota_exceeded"]
    assert [v.name for v in lifecycle.list_vms(hv) if v.project == "solo"] == [n for n, o in outcome.items()
                                                                               if o == "made"]


def test_growth_beyond_a_quota_is_refused_and_changes_nothing(hv: Hypervisor, volume: str) -> None:
    projects.create_project(ProjectRequest(name="web", max_cpus=4, max_disk=2 * 1024**3))
    hv_domains.define(hv, vm_xml("w1", "web", vcpus=2))
    with pytest.raises(QuotaExceeded, match="over its vCPUs quota: limit 4, in use 2, this request adds 6"):
        tuning.set_limits(hv, "w1", SetRequest(max_cpus=8))
    with pytest.raises(QuotaExceeded, match="over its disk quota: limit 2 GiB, in use 0 B, this request adds 3 GiB"):
        disks.add(hv, "w1", vol=f"default-pool/{volume}")
    assert projects.use(hv, "web") == ProjectUse(vms=1, cpus=2, memory=256 * MIB)
    tuning.set_limits(hv, "w1", SetRequest(max_cpus=4))  # up to the quota is let through
    assert projects.use(hv, "web").cpus == 4
