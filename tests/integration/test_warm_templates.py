"""Warm templates on a private test host: one template from a booted tiny guest, three VMs restored from it on
one network. Each is ready, answers on its own address with its own hostname, machine-id and SSH host key; a
process started in the source before the save runs on in each (restored, not rebooted); the template cannot be
removed while they exist.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, LAB_SUBNET, Result, Runner
from tests.integration.guest import guest_sh, guest_start

TEMPLATE = "warm-tpl"
SOURCE = "warm-src"
CLONES = ("warm-a", "warm-b", "warm-c")
COUNTER = "i=0; while :; do i=$((i + 1)); echo $i >/run/counter; sleep 1; done"


@dataclass
class Warm:
    failed: Result  # a template create that failed after freezing the disk (an injected fault)
    failed_after: str  # the source's `ip -4 -o addr` and counter after that failure was undone
    counted: int  # the source's counter just before the template was made
    ips: dict[str, str]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def warm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[Warm]:
    r = kvmhub("create", SOURCE, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--wait",
               "--timeout", "240")
    assert r.code == 0, r.err
    made: list[str] = [SOURCE]
    try:
        guest_start(prepared_host, SOURCE, ["sh", "-c", COUNTER])
        time.sleep(2)
        failed = kvmhub("template", "create", TEMPLATE, "--from", SOURCE,
                        env={"KVMHUB_INJECT_FAULT": "template-freeze"})
        failed_after = guest_sh(prepared_host, SOURCE, "sleep 2; ip -4 -o addr; cat /run/counter")
        counted = int(guest_sh(prepared_host, SOURCE, "cat /run/counter"))
        r = kvmhub("template", "create", TEMPLATE, "--from", SOURCE)
        assert r.code == 0, r.err
        ips: dict[str, str] = {}
        seconds: dict[str, float] = {}
        for name in CLONES:
            began = time.monotonic()
            r = kvmhub("create", name, "--template", TEMPLATE, "--network", LAB_NET, "--wait", "--timeout", "120")
            seconds[name] = time.monotonic() - began
            assert r.code == 0, r.err
            made.append(name)
            ips[name] = kvmhub("ip", name, "--json").json()[0]["ip"]
        yield Warm(failed, failed_after, counted, ips, seconds)
    finally:
        for name in made:
            kvmhub("rm", name)
        kvmhub("template", "rm", TEMPLATE)


def test_each_vm_is_ready_and_answers_on_its_own_address(warm: Warm, kvmhub: Runner,
                                                        prepared_host: TestHost) -> None:
    assert len(set(warm.ips.values())) == len(CLONES)
    macs = set()
    for name, ip in warm.ips.items():
        shown = kvmhub("show", name, "--json").json()
        assert shown["state"] == "running" and shown["phase"] == "ready", shown
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(LAB_SUBNET)
        macs.add(kvmhub("nic", "ls", name, "--json").json()[0]["mac"])
        ping = prepared_host.run(["ping", "-n", "-c", "1", "-W", "5", ip], check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    assert len(macs) == len(CLONES)
    # and they reach each other by name (the network's DNS, asked from their new addresses)
    for name, other in zip(CLONES, CLONES[1:] + CLONES[:1], strict=True):
        out = guest_sh(prepared_host, name, f"ping -c 1 -W 5 {other}")
        assert f"({warm.ips[other]})" in out, out


def test_each_vm_has_its_own_hostname_machine_id_and_host_key(warm: Warm, prepared_host: TestHost) -> None:
    machine_ids, host_keys = set(), set()
    for name, ip in warm.ips.items():
        assert guest_sh(prepared_host, name, "hostname").strip() == name
        machine_ids.add(guest_sh(prepared_host, name, "cat /etc/machine-id").strip())
        scan = prepared_host.run(["ssh-keyscan", "-T", "30", "-t", "ed25519", ip], check=False, timeout=60)
        keys = [line.split(None, 1)[1] for line in scan.stdout.splitlines() if line and not line.startswith("#")]
        assert len(keys) == 1, scan.stdout + scan.stderr
        host_keys.add(keys[0])
    assert len(machine_ids) == len(CLONES) and all(len(m) == 32 for m in machine_ids)
    assert len(host_keys) == len(CLONES)


def test_a_process_of_the_template_runs_on_in_each_vm(warm: Warm, prepared_host: TestHost) -> None:
    for name in CLONES:
        first = int(guest_sh(prepared_host, name, "cat /run/counter"))
        assert first >= warm.counted  # /run is a tmpfs: a reboot would have lost the file and the loop
        time.sleep(1.5)
        assert int(guest_sh(prepared_host, name, "cat /run/counter")) > first


def test_template_lists_its_vms_and_is_not_removed_while_they_exist(warm: Warm, kvmhub: Runner) -> None:
    shown = kvmhub("template", "show", TEMPLATE, "--json").json()
    assert set(CLONES) | {SOURCE} == set(shown["vms"])
    assert shown["state_bytes"] > 50 * 1024**2 and shown["base_bytes"] > 0
    assert TEMPLATE in [t["name"] for t in kvmhub("template", "ls", "--json").json()]
    r = kvmhub("template", "rm", TEMPLATE)
    assert r.code == 4
    assert "is in use by VMs" in r.err and all(name in r.err for name in CLONES)
    assert kvmhub("template", "show", TEMPLATE).code == 0


def test_a_failed_template_create_gives_the_source_back_running_on_its_network(warm: Warm) -> None:
    assert warm.failed.code != 0
    assert "injected failure after step 'template-freeze'" in warm.failed.err
    assert "undo: resume warm-src" in warm.failed.err
    lines = warm.failed_after.strip().splitlines()
    assert any("eth0" in line and " inet " in line for line in lines[:-1]), warm.failed_after  # DHCP again
    assert int(lines[-1]) > 0  # the loop survived: resumed from the state file, not rebooted
