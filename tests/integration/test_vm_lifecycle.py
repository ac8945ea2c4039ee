"""A tiny VM's whole life through the kvmhub CLI on a private test host, as a user sees it.

The tests share one VM (booting a guest under TCG is slow) but not its state: `running_vm` and `stopped_vm`
put it in the state a test needs, whatever the test before left, so each test runs alone or in any order.
Removal uses a VM of its own.
"""

from __future__ import annotations

import ipaddress
import os
import pty
import select
import subprocess
import time

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import KVMHUB, LAB_NET, LAB_SUBNET, Runner


def serial_log(kvmhub: Runner, name: str) -> str:
    r = kvmhub("console", name, "--log")
    assert r.code == 0, r.err
    return r.out


def wait_log(kvmhub: Runner, name: str, marker: str, count: int = 1, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = serial_log(kvmhub, name)
        if text.count(marker) >= count:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{marker!r} x{count} not on the serial log within {timeout} s:\n{text[-2000:]}")


def state_of(kvmhub: Runner, name: str) -> str:
    r = kvmhub("show", name, "--json")
    assert r.code == 0, r.err
    return str(r.json()["state"])


@pytest.fixture
def running_vm(booted_vm: str, kvmhub: Runner) -> str:
    """The module's VM, running and booted."""
    state = state_of(kvmhub, booted_vm)
    if state == "paused":
        assert kvmhub("resume", booted_vm).code == 0
    elif state != "running":
        r = kvmhub("start", booted_vm, "--wait", "--timeout", "240")
        assert r.code == 0, r.err
    return booted_vm


@pytest.fixture
def stopped_vm(booted_vm: str, kvmhub: Runner) -> str:
    """The module's VM, shut off."""
    if state_of(kvmhub, booted_vm) != "shut off":
        assert kvmhub("kill", booted_vm).code == 0
    return booted_vm


def test_created_vm_booted_and_has_an_ip_on_the_isolated_network(
    running_vm: str, kvmhub: Runner, prepared_host: TestHost
) -> None:
    log = serial_log(kvmhub, running_vm)
    assert "KVMHUB-BOOTED" in log
    assert f"KVMHUB-HOSTNAME {running_vm}" in log
    r = kvmhub("ip", running_vm, "--json")
    assert r.code == 0, r.err
    ips = [a["ip"] for a in r.json()]
    assert ips and ipaddress.ip_address(ips[0]) in ipaddress.ip_network(LAB_SUBNET)
    # the guest answers on the network, seen from inside the test host
    ping = prepared_host.run(["ping", "-c", "2", "-W", "5", ips[0]], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_listing_and_show(running_vm: str, kvmhub: Runner) -> None:
    r = kvmhub("ls", "--json")
    assert r.code == 0, r.err
    row = next(v for v in r.json() if v["name"] == running_vm)
    assert row["state"] == "running"
    assert row["memory_mib"] == 256
    shown = kvmhub("show", running_vm, "--json").json()
    assert shown["image"] == "tiny"
    assert shown["domain_type"] in ("qemu", "kvm")
    assert [d["target"] for d in shown["disks"]] == ["vda", "vdb"]


def test_interactive_console_runs_a_command_and_ctrl_bracket_leaves(
    running_vm: str, prepared_host: TestHost
) -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen([*KVMHUB, "console", running_vm], stdin=child, stdout=child, stderr=child,
                            env={**os.environ, **prepared_host.env()})
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        os.write(main, b"\r")
        time.sleep(1)
        os.write(main, b"echo console-$((40+2))\r")
        while b"console-42" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                seen += os.read(main, 4096)
        assert b"console-42" in seen, seen[-500:]
        os.write(main, b"\x1d")
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)


def test_pause_and_resume(running_vm: str, kvmhub: Runner) -> None:
    assert kvmhub("pause", running_vm).code == 0
    assert state_of(kvmhub, running_vm) == "paused"
    again = kvmhub("pause", running_vm)
    assert again.code == 4 and "it is paused" in again.err
    assert kvmhub("resume", running_vm).code == 0
    assert state_of(kvmhub, running_vm) == "running"


def test_reboot_boots_the_guest_again(running_vm: str, kvmhub: Runner) -> None:
    before = serial_log(kvmhub, running_vm).count("KVMHUB-BOOTED")
    r = kvmhub("reboot", running_vm)
    assert r.code == 0, r.err
    wait_log(kvmhub, running_vm, "KVMHUB-BOOTED", count=before + 1)
    assert state_of(kvmhub, running_vm) == "running"


def test_virsh_sees_the_kvmhub_vm(running_vm: str, prepared_host: TestHost) -> None:
    listed = prepared_host.virsh("list", "--all", "--name").stdout.split()
    assert running_vm in listed
    assert "running" in prepared_host.virsh("domstate", running_vm).stdout


def test_graceful_stop_goes_through_acpi(running_vm: str, kvmhub: Runner) -> None:
    before = serial_log(kvmhub, running_vm).count("KVMHUB-POWEROFF")
    r = kvmhub("stop", running_vm, "--timeout", "90")
    assert r.code == 0, r.err
    assert "shut down" in r.err
    assert state_of(kvmhub, running_vm) == "shut off"
    # the guest saw the power button: its init printed the power-off marker before QEMU exited
    assert serial_log(kvmhub, running_vm).count("KVMHUB-POWEROFF") == before + 1


def test_start_then_kill(stopped_vm: str, kvmhub: Runner) -> None:
    r = kvmhub("start", stopped_vm, "--wait", "--timeout", "240")
    assert r.code == 0, r.err
    assert "KVMHUB-BOOTED" in serial_log(kvmhub, stopped_vm)
    assert kvmhub("kill", stopped_vm).code == 0
    assert state_of(kvmhub, stopped_vm) == "shut off"
    r = kvmhub("kill", stopped_vm)
    assert r.code == 4 and "shut off" in r.err


def test_virsh_can_stop_a_kvmhub_vm(stopped_vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    assert kvmhub("start", stopped_vm).code == 0
    prepared_host.virsh("destroy", stopped_vm)
    assert state_of(kvmhub, stopped_vm) == "shut off"


def test_autostart_is_set_and_cleared(booted_vm: str, kvmhub: Runner, prepared_host: TestHost) -> None:
    assert kvmhub("set", booted_vm, "--autostart").code == 0
    assert "enable" in prepared_host.virsh("dominfo", booted_vm).stdout.split("Autostart:")[1].splitlines()[0]
    assert kvmhub("show", booted_vm, "--json").json()["autostart"] is True
    assert kvmhub("set", booted_vm, "--no-autostart").code == 0
    assert kvmhub("show", booted_vm, "--json").json()["autostart"] is False


def test_rm_leaves_no_volume_seed_or_domain(prepared_host: TestHost, kvmhub: Runner) -> None:
    vm = "lifecycle-rm"
    r = kvmhub("create", vm, "--image", "tiny", "--network", LAB_NET, "--memory", "128M")
    assert r.code == 0, r.err
    assert vm in prepared_host.virsh("vol-list", "default").stdout
    assert vm in prepared_host.virsh("net-dumpxml", LAB_NET).stdout
    r = kvmhub("rm", vm)
    assert r.code == 0, r.err
    assert vm not in prepared_host.virsh("list", "--all", "--name").stdout.split()
    assert vm not in prepared_host.virsh("vol-list", "default").stdout
    assert vm not in prepared_host.virsh("net-dumpxml", LAB_NET).stdout  # its reservation went too
    # the image it was cloned from stays
    assert "tiny" in kvmhub("image", "ls").out
    assert kvmhub("show", vm).code == 3
