"""Ready on a real distribution: the final_message kvmhub puts in the seed comes just before cloud-init writes
result.json, so with an agent answering, ready (and cloud-init's errors) wait for that file."""

from __future__ import annotations

import json
from pathlib import Path

from kvmhub.models import Phase
from kvmhub.services.vm import readiness
from kvmhub.xml.domain import domain_from_xml
from tests.unit.test_guest_ssh import AgentGuest

FAILED = json.dumps({"v1": {"errors": ["('scripts_user', RuntimeError('Runparts: 1 failures (runcmd)'))"]}})


def test_the_final_message_waits_for_cloud_inits_result_when_the_agent_answers(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("[  OK  ] Started cloud-final.service\nKVMHUB-READY cloud-init 22.4.2 finished, up 38.1 s\n")
    guest = AgentGuest(None)
    spec = domain_from_xml(guest.xml())
    assert readiness.current_phase(guest, spec, str(log)).phase is Phase.NETWORK  # type: ignore[arg-type]
    guest.result = FAILED
    prog = readiness.current_phase(guest, spec, str(log))  # type: ignore[arg-type]
    assert prog.phase is Phase.READY
    assert prog.errors == ["('scripts_user', RuntimeError('Runparts: 1 failures (runcmd)'))"]


def test_the_appliances_marker_says_ready_without_a_result_file(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("KVMHUB-BOOTED\nKVMHUB-NETWORK eth0 10.77.0.5\nKVMHUB-READY\n")
    guest = AgentGuest(None)
    prog = readiness.current_phase(guest, domain_from_xml(guest.xml()), str(log))  # type: ignore[arg-type]
    assert (prog.phase, prog.errors) == (Phase.READY, [])
