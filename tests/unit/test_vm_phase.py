"""Each VM's phase in `ls` and `show` (and their JSON), from the serial log markers and leases, locally and
through the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.services.vm import readiness
from tests.unit.cli_server import cli, run, serving

URI = "test:///default"
LOG_DIR = readiness.SERIAL_LOG_DIR


def vm_xml(name: str) -> str:
    """A test-driver VM whose serial console logs where kvmhub's VMs log, with a guest agent channel."""
    return f"""<domain type='test'><name>{name}</name><memory>65536</memory><vcpu>1</vcpu>
      <os><type>hvm</type></os>
      <devices>
        <serial type='pty'><log file='{LOG_DIR}/{name}-serial.log' append='on'/></serial>
        <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
      </devices></domain>"""


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hypervisor]:
    """The test driver kept open (so the VMs defined stay while the CLI runs in-process), with the host's files
    seen under ``tmp_path``."""
    monkeypatch.setenv("KVMHUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KVMHUB_HOST_ROOT", str(tmp_path))
    (tmp_path / LOG_DIR.lstrip("/")).mkdir(parents=True)
    with Hypervisor(URI) as hv:
        yield hv




def phases() -> tuple[dict[str, str], dict[str, str], str]:
    """(phase per VM in `ls --json`, in the `ls` table, `show ph --json`'s phase)."""
    listed = {v["name"]: v["phase"] for v in json.loads(cli("ls", "--json"))}
    lines = cli("ls").splitlines()
    at = lines[0].index("PHASE")  # the STATE before it may be two words ("shut off")
    table = {line.split()[0]: line[at:].split()[0] for line in lines[1:]}
    return listed, table, json.loads(cli("show", "ph", "--json"))["phase"]


def test_phase_follows_the_serial_log_in_ls_and_show(held: Hypervisor, tmp_path: Path) -> None:
    hv_domains.define(held, vm_xml("ph"))
    hv_domains.define(held, vm_xml("off"))
    log = tmp_path / LOG_DIR.lstrip("/") / "ph-serial.log"
    listed, table, shown = phases()
    assert listed["ph"] == table["ph"] == shown == "defined"
    assert listed["off"] == "defined"
    hv_domains.lookup(held, "ph").start()
    log.write_text("[    0.000000] Linux version 6.1\n")
    listed, table, shown = phases()
    assert listed["ph"] == table["ph"] == shown == "running"
    log.write_text("KVMHUB-BOOTED\nKVMHUB-NETWORK eth0 192.168.122.40/24\n")
    listed, table, shown = phases()
    assert listed["ph"] == table["ph"] == shown == "network"
    log.write_text(log.read_text() + "KVMHUB-READY\n")
    listed, table, shown = phases()
    assert listed["ph"] == table["ph"] == shown == "ready"
    assert listed["off"] == table["off"] == "defined"


def test_a_vm_made_by_another_tool_is_networked_once_leased(held: Hypervisor) -> None:
    # the test driver's own VM: no guest agent, no kvmhub serial log, a lease
    assert json.loads(cli("show", "test", "--json"))["phase"] == "network"
    assert {v["name"]: v["phase"] for v in json.loads(cli("ls", "--json"))}["test"] == "network"


def test_phase_through_the_server_reads_as_locally(tmp_path: Path) -> None:
    def without_ips(text: str) -> object:  # the test driver's address follows its domain id, which restarts change
        found = json.loads(text)
        for vm in found if isinstance(found, list) else [found]:
            vm.pop("ips")
        return found

    with serving(tmp_path) as server:
        for args in (("ls", "--json"), ("show", "test", "--json")):
            local, remote = run("--local", *args), run("--remote", server, *args)
            assert local[0] == remote[0] == 0, (local, remote)
            assert without_ips(local[1]) == without_ips(remote[1]), (local, remote)
        local, remote = run("--local", "ls"), run("--remote", server, "ls")
        assert [line.split()[:3] for line in local[1].splitlines()] == [
            line.split()[:3] for line in remote[1].splitlines()]  # NAME STATE PHASE
        assert remote[1].splitlines()[1].split()[2] == "network"
