"""`create --tpm` over libvirt's test driver: the domain gets a TPM 2.0 on the CRB interface emulated by swtpm,
`show` reports it in both modes, a host whose libvirt offers no emulated TPM is refused with the fix, and a clone
carries the swtpm state (or says its TPM starts empty)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from kvmhub.errors import HostProblem, exit_code, http_status
from kvmhub.hv import Hypervisor, domcaps
from kvmhub.hv import domains as hv_domains
from kvmhub.models import CreateRequest, TPMSpec
from kvmhub.ops import actions
from kvmhub.ops.actions import Action, Context
from kvmhub.services.vm import create as vm_create
from kvmhub.services.vm import lifecycle, tpm
from kvmhub.xml import domain_from_xml, domain_to_xml
from kvmhub.xml._util import parse
from kvmhub.xml.hostbound import clone_warnings
from kvmhub.xml.tpm import emulator_offered
from tests.unit.cli_server import cli

URI = "test:///default"
UUID = "0d1c2b3a-4f5e-4a6b-9c8d-7e6f5a4b3c2d"
TPM_2 = TPMSpec(model="tpm-crb", backend="emulator", version="2.0")


def _domcaps(tpm_xml: str) -> str:
    return f"<domainCapabilities><path>/usr/bin/qemu-system-x86_64</path><devices>{tpm_xml}</devices>" \
           "</domainCapabilities>"


WITH_SWTPM = _domcaps(
    "<tpm supported='yes'><enum name='model'><value>tpm-tis</value><value>tpm-crb</value></enum>"
    "<enum name='backendModel'><value>passthrough</value><value>emulator</value></enum>"
    "<enum name='backendVersion'><value>1.2</value><value>2.0</value></enum></tpm>")
NO_SWTPM = _domcaps(
    "<tpm supported='yes'><enum name='model'><value>tpm-tis</value><value>tpm-crb</value></enum>"
    "<enum name='backendModel'><value>passthrough</value></enum></tpm>")


def _xml(req: CreateRequest) -> str:
    return domain_to_xml(vm_create.build_spec(req, 256, "qemu", UUID))


def test_create_with_tpm_asks_libvirt_for_an_emulated_tpm_2_on_crb() -> None:
    devices = parse(_xml(CreateRequest(name="t1", image="tiny", tpm=True)), "domain").find("devices")
    assert devices is not None
    [el] = devices.findall("tpm")
    assert el.get("model") == "tpm-crb"
    assert [(b.get("type"), b.get("version")) for b in el.findall("backend")] == [("emulator", "2.0")]


def test_create_without_tpm_has_none() -> None:
    xml = _xml(CreateRequest(name="t1", image="tiny"))
    assert parse(xml, "domain").find("devices/tpm") is None
    assert domain_from_xml(xml).tpm is None


def test_show_reports_the_tpm_in_both_modes(client: TestClient) -> None:
    with Hypervisor(URI) as hv:
        hv_domains.define(hv, _xml(CreateRequest(name="t1", image="tiny", tpm=True)))
        assert lifecycle.show(hv, "t1").tpm == TPM_2
    assert client.get("/api/v1/vms/t1").json()["tpm"] == {"model": "tpm-crb", "backend": "emulator",
                                                          "version": "2.0"}
    assert "tpm: TPM 2.0 (tpm-crb, emulator)" in cli("show", "t1")
    assert "tpm: -" in cli("show", "test")  # the test driver's own VM has none


@pytest.mark.parametrize(("caps", "offered"), [
    (WITH_SWTPM, True),
    (NO_SWTPM, False),  # libvirt found no swtpm
    (_domcaps("<tpm supported='no'/>"), False),
    (_domcaps(""), False),  # a libvirt too old to say
    (_domcaps("<tpm supported='yes'><enum name='backendModel'><value>emulator</value></enum>"
              "<enum name='backendVersion'><value>1.2</value></enum></tpm>"), False),  # a swtpm without TPM 2.0
])
def test_the_host_offers_an_emulated_tpm_2_only_when_libvirt_lists_it(caps: str, offered: bool) -> None:
    assert emulator_offered(caps) is offered


def test_a_host_without_swtpm_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(domcaps, "domain_capabilities", lambda hv, virttype: NO_SWTPM)
    with Hypervisor(URI) as hv, pytest.raises(HostProblem) as caught:
        tpm.check_host(hv, "kvm")
    err = caught.value
    assert (exit_code(err), http_status(err)) == (5, 503)
    assert err.message == "this host cannot give the VM an emulated TPM 2.0 (--tpm)"
    assert "`apt-get install swtpm swtpm-tools`" in (err.hint or "") and "without --tpm" in (err.hint or "")
    assert err.to_dict("api")["message"] == "this host cannot give the VM an emulated TPM 2.0 (tpm)"


def test_the_test_driver_cannot_tell_and_passes() -> None:
    with Hypervisor(URI) as hv:
        tpm.check_host(hv, "qemu")


def test_a_tpm_that_is_not_a_bool_is_refused_before_anything_starts(client: TestClient) -> None:
    answer = client.post("/api/v1/vms", json={"name": "t1", "image": "tiny", "tpm": "sometimes"})
    assert answer.status_code == 422 and "tpm" in answer.json()["error"]
    assert client.get("/api/v1/operations").json() == []
    assert client.get("/api/v1/vms/t1").status_code == 404


class _Steps:
    """A StepLog that keeps the undo actions, as an operation's journal does."""

    def __init__(self) -> None:
        self.undos: list[Action] = []

    def add(self, description: str, undo: Action | Callable[[], object] | None = None) -> None:
        assert isinstance(undo, Action), description
        self.undos.append(undo)

    def made(self, **params: Any) -> None:
        self.undos[-1].params.update(params)


def test_clone_copies_the_swtpm_state_and_its_undo_removes_the_copy(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KVMHUB_HOST_ROOT", str(tmp_path))
    src = tmp_path / tpm.state_dir(UUID).lstrip("/")
    (src / "tpm2").mkdir(parents=True)
    (src / "tpm2" / "tpm2-00.permall").write_bytes(b"sealed keys")
    (src / "tpm2" / "tpm2-00.permall").chmod(0o600)
    copy = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
    assert tpm.has_state(UUID) and not tpm.has_state(copy)
    steps = _Steps()
    tpm.copy_state(UUID, copy, steps)
    copied = tmp_path / tpm.state_dir(copy).lstrip("/") / "tpm2" / "tpm2-00.permall"
    assert copied.read_bytes() == b"sealed keys" and copied.stat().st_mode & 0o777 == 0o600
    with Hypervisor(URI) as hv:
        ctx = Context(hv, str(tmp_path))
        [undo] = steps.undos
        actions.run(ctx, undo)
        assert not tpm.has_state(copy) and tpm.has_state(UUID)
        actions.run(ctx, undo)  # gone already: done


@pytest.mark.parametrize(("state", "said"), [
    ("copied", []),
    ("none", ["the clone gets an empty emulated TPM: the source's has no state yet (it never ran)"]),
    ("not copied", ["the clone gets an empty emulated TPM: the source's TPM state (keys, sealed secrets) is not "
                    "copied"]),
])
def test_a_clone_says_when_its_tpm_starts_empty(state: Literal["copied", "none", "not copied"],
                                                said: list[str]) -> None:
    tree = parse(_xml(CreateRequest(name="t1", image="tiny", tpm=True)), "domain")
    assert tpm.emulated(tree)
    assert clone_warnings(tree, tpm_state=state) == said
