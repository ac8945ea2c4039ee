"""kill -9 (and SIGTERM) at every fault point: the next kvmhub command puts the host back as it was."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from kvmhub.errors import Conflict, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.services import images
from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.crash import host_state, kill_at

CREATE_STEPS = ["clone-disk", "build-seed", "reserve-address", "define", "start"]


def _recovered(kvmhub: Runner) -> str:
    """Run an ordinary command; it takes over the dead operation first. Returns what it said."""
    r = kvmhub("ls")
    assert r.code == 0, r.err
    return r.err


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", CREATE_STEPS)
def test_kill9_during_create_is_undone_by_the_next_command(step: str, attempt: int, prepared_host: TestHost,
                                                           kvmhub: Runner) -> None:
    before = host_state(prepared_host)
    code, _ = kill_at(prepared_host, ["create", f"k9-{attempt}", "--image", "tiny", "--network", LAB_NET,
                                      "--memory", "128M"], step)
    assert code == -signal.SIGKILL
    assert host_state(prepared_host) != before  # the kill left something for recovery to take back
    said = _recovered(kvmhub)
    assert "recovered interrupted operation" in said and "rolled-back" in said, said
    assert host_state(prepared_host) == before
    ops = kvmhub("ops", "ls", "--json").json()
    assert ops[0]["kind"] == "vm.create" and ops[0]["state"] == "rolled-back"
    assert kvmhub("repair").out.strip() == "nothing to repair"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_undo_like_ctrl_c(sig: int, prepared_host: TestHost, kvmhub: Runner) -> None:
    before = host_state(prepared_host)
    code, err = kill_at(prepared_host, ["create", "term", "--image", "tiny", "--network", LAB_NET,
                                        "--memory", "128M", "--no-start"], "define", sig=sig)
    assert code == 130, err
    assert "undo: undefine VM term" in err
    assert host_state(prepared_host) == before
    assert kvmhub("ops", "ls", "--json").json()[0]["state"] == "cancelled"


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["import-record", "import-store", "import-done"])
def test_kill9_during_image_import_leaves_no_usable_image(step: str, attempt: int, prepared_host: TestHost,
                                                          kvmhub: Runner, tiny_image_file: Path) -> None:
    name = f"k9img-{attempt}"
    before = host_state(prepared_host)
    code, _ = kill_at(prepared_host, ["image", "import", str(tiny_image_file), "--name", name], step)
    assert code == -signal.SIGKILL
    if step != "import-done":  # before its record says complete, nothing may use the image
        with Hypervisor(prepared_host.uri) as hv, pytest.raises((Conflict, NotFound)) as refused:
            images.get(hv, name)
        assert isinstance(refused.value, NotFound if step == "import-record" else Conflict)
    said = _recovered(kvmhub)
    assert "rolled-back" in said, said
    assert host_state(prepared_host) == before
    r = kvmhub("create", "uses-it", "--image", name, "--no-start")
    assert r.code == 3 and f"no image named {name!r}" in r.err


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("step", ["vm.rm:domain.destroy", "vm.rm:domain.undefine", "vm.rm:lease.release",
                                  "vm.rm:volume.delete"])
def test_kill9_during_rm_is_finished_by_the_next_command(step: str, attempt: int, prepared_host: TestHost,
                                                         kvmhub: Runner) -> None:
    name = f"k9rm-{attempt}"
    before = host_state(prepared_host)
    assert kvmhub("create", name, "--image", "tiny", "--network", LAB_NET, "--memory", "128M").code == 0
    code, _ = kill_at(prepared_host, ["rm", name], step)
    assert code == -signal.SIGKILL
    assert host_state(prepared_host) != before  # killed halfway: the rest is still there
    said = _recovered(kvmhub)
    assert "recovered interrupted operation" in said and "completed" in said, said
    assert host_state(prepared_host) == before
    assert kvmhub("ops", "ls", "--json").json()[0]["state"] == "completed"
