"""Projects on a real host: the create that would exceed a quota is refused and leaves nothing behind; listings
keep the owners they read between processes."""

from __future__ import annotations

from pathlib import Path

from kvmhub.services import owners_store
from kvmhub.testing import TestHost
from tests.integration.conftest import Runner
from tests.integration.test_vm_create_failures import leftovers

MIB = 1024**2


def test_a_memory_quota_refuses_the_second_create_and_leaves_nothing(prepared_host: TestHost,
                                                                     kvmhub: Runner) -> None:
    made = kvmhub("project", "add", "quota-it", "--max-memory", "200M")
    assert made.code == 0, made.err
    try:
        first = kvmhub("create", "q-1", "--image", "tiny", "--memory", "128M", "--no-start", "--project", "quota-it")
        assert first.code == 0, first.err
        assert "<kvmhub:project>quota-it</kvmhub:project>" in prepared_host.virsh("dumpxml", "q-1").stdout
        second = kvmhub("create", "q-2", "--image", "tiny", "--memory", "128M", "--no-start",
                        "--project", "quota-it")
        assert second.code == 1, second.err
        assert ("project 'quota-it' is over its memory quota: limit 200 MiB, in use 128 MiB, "
                "this request adds 128 MiB") in second.err
        assert "`kvmhub project set quota-it` --max-memory" in second.err
        assert leftovers(prepared_host, "q-2") == []
        use = kvmhub("project", "show", "quota-it", "--json").json()["use"]
        assert (use["vms"], use["memory"]) == (1, 128 * MIB) and use["disk"] > 0
        listed = kvmhub("ls").out.splitlines()
        assert listed[0].split()[:2] == ["NAME", "PROJECT"]
        assert ["q-1", "quota-it"] in [line.split()[:2] for line in listed[1:]]
    finally:
        kvmhub("rm", "q-1")
        kvmhub("project", "rm", "quota-it")
    assert leftovers(prepared_host, "q-1") == []


def _foreign_definition(uuid: str, project: str) -> str:
    return (f"<domain type='qemu'><name>own-1</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><metadata>"
            f"<kvmhub:vm xmlns:kvmhub='https://kvmhub.dev/xmlns/1'><kvmhub:project>{project}</kvmhub:project>"
            "</kvmhub:vm></metadata></domain>")


def test_listings_keep_owners_between_processes_and_forget_a_removed_vm(prepared_host: TestHost, kvmhub: Runner,
                                                                        tmp_path: Path) -> None:
    """Each `kvmhub ls` is a new process: the owners one read are kept on disk for the next. A VM kvmhub removes is
    forgotten there, so the same UUID defined again (here by virsh, in another project) shows its new project."""
    uuid = "0b5e0c1e-4d1a-4c55-9a43-5e2f4a1d7c01"
    definition = tmp_path / "own-1.xml"
    definition.write_text(_foreign_definition(uuid, "it-a"))
    prepared_host.virsh("define", str(definition))
    try:
        def project_of_own() -> str:
            listed = kvmhub("ls", "--json")
            assert listed.code == 0, listed.err
            return next(str(vm["project"]) for vm in listed.json() if vm["name"] == "own-1")

        assert project_of_own() == "it-a"
        assert owners_store.load(prepared_host.uri, 60.0)[uuid][0] == "it-a"
        assert project_of_own() == "it-a"  # from what the first process kept
        removed = kvmhub("rm", "own-1")
        assert removed.code == 0, removed.err
        assert uuid not in owners_store.load(prepared_host.uri, 60.0)
        definition.write_text(_foreign_definition(uuid, "it-b"))
        prepared_host.virsh("define", str(definition))
        assert project_of_own() == "it-b"
    finally:
        prepared_host.virsh("undefine", "own-1", check=False)
