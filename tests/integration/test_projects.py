"""A project's quota on a real host: the create that would exceed it is refused and leaves nothing behind."""

from __future__ import annotations

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
