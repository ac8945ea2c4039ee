"""libvirt failures become kvmhub errors naming cause and fix; each kind maps to one exit code and status."""

from __future__ import annotations

import libvirt
import pytest

from kvmhub.errors import (
    Conflict,
    HostProblem,
    InvalidInput,
    KvmhubError,
    NotFound,
    OperationFailed,
    OperationTimeout,
    exit_code,
    http_status,
)
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv.connection import run_bounded
from kvmhub.hv.errors import translate


def fake(code: int, message: str) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 2, message, None, None, -1, -1)
    return err


@pytest.mark.parametrize(
    ("code", "message", "kind", "hint_word"),
    [
        (libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/libvirt/libvirt-sock': "
         "No such file or directory", HostProblem, "libvirtd -d"),
        (libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/libvirt/virtlogd-sock': "
         "Connection refused", HostProblem, "virtlogd -d"),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "process exited while connecting to monitor: Could not open "
         "'/srv/x.qcow2': Permission denied", HostProblem, "chmod"),
        (libvirt.VIR_ERR_OPERATION_INVALID, "domain 'x' already exists with uuid 1234", Conflict, "another name"),
        (libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name 'x'", NotFound, "kvmhub ls"),
        (libvirt.VIR_ERR_CONFIG_UNSUPPORTED, "invalid argument: could not find capabilities for "
         "arch=x86_64 domaintype=kvm: KVM is not available", HostProblem, "host check"),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "Could not access KVM kernel module: Permission denied",
         HostProblem, "host setup"),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "cannot write file: No space left on device", HostProblem, "df -h"),
        (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running",
         Conflict, "kvmhub start"),
        (libvirt.VIR_ERR_OPERATION_TIMEOUT, "Timed out during operation: cannot acquire state change lock",
         OperationTimeout, "virsh version"),
        (libvirt.VIR_ERR_XML_ERROR, "XML error: bad disk", InvalidInput, None),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "something odd", OperationFailed, None),
    ],
)
def test_translation(code: int, message: str, kind: type[KvmhubError], hint_word: str | None) -> None:
    err = translate(fake(code, message), "starting VM x")
    assert type(err) is kind
    assert err.message.startswith("starting VM x")
    assert err.original == message
    if hint_word:
        assert hint_word in (err.hint or "")
    assert message in str(err) or err.message.endswith("failed")


def test_exit_codes_and_statuses_in_one_place() -> None:
    assert [exit_code(k("x")) for k in (OperationFailed, InvalidInput, NotFound, Conflict, HostProblem,
                                        OperationTimeout)] == [1, 2, 3, 4, 5, 6]
    assert [http_status(k("x")) for k in (OperationFailed, InvalidInput, NotFound, Conflict, HostProblem,
                                          OperationTimeout)] == [500, 400, 404, 409, 503, 504]


def test_real_errors_from_the_test_driver() -> None:
    hv = Hypervisor("test:///default")
    with pytest.raises(NotFound):
        hv_domains.lookup(hv, "no-such-vm")
    dom = hv_domains.lookup(hv, "test")
    with pytest.raises(Conflict) as info:
        dom.start()
    assert "already" in info.value.message
    hv.close()


def test_unreachable_daemon_is_a_host_problem(tmp_path: object) -> None:
    hv = Hypervisor(f"qemu+unix:///system?socket={tmp_path}/nothing-here")
    with pytest.raises(HostProblem) as info:
        hv_domains.list_all(hv)
    assert "libvirtd -d" in (info.value.hint or "")


def test_a_stalled_call_times_out_instead_of_hanging() -> None:
    import threading

    never = threading.Event()
    with pytest.raises(OperationTimeout) as info:
        run_bounded(lambda: never.wait(30), 0.2, "listing VMs")
    assert "no answer from libvirt" in info.value.message


def test_hint_terms_read_as_cli_flags_and_commands_or_as_api_fields_and_operations() -> None:
    err = InvalidInput(
        "{opt:max_cpus} is below {opt:cpus}",
        cause="the VM {opt:cpus} cannot exceed its ceiling",
        hint="raise it with {cmd:set web --max-cpus 8 --live}, or see {cmd:host setup}; `virsh vcpucount web`",
        code="input.invalid_size",
    )
    assert err.message == "--max-cpus is below --cpus"
    assert err.hint == "raise it with `kvmhub set web --max-cpus 8 --live`, or see `kvmhub host setup`; " \
                       "`virsh vcpucount web`"
    assert str(err) == ("--max-cpus is below --cpus\ncause: the VM --cpus cannot exceed its ceiling\n"
                        "fix: raise it with `kvmhub set web --max-cpus 8 --live`, or see `kvmhub host setup`; "
                        "`virsh vcpucount web`")
    assert err.to_dict() == {
        "error": "InvalidInput", "code": "input.invalid_size", "message": "--max-cpus is below --cpus",
        "cause": "the VM --cpus cannot exceed its ceiling", "hint": err.hint, "original": None,
    }
    api = err.to_dict(front="api")
    assert api["message"] == "max_cpus is below cpus"
    assert api["hint"] == "raise it with `set web max_cpus 8 live`, or see `host setup`; `virsh vcpucount web`"
    assert "--" not in (api["cause"] or "") and "kvmhub" not in (api["hint"] or "")


def test_a_rewrapped_message_keeps_its_terms() -> None:
    err = NotFound("no image {opt:image}", hint="list them: {cmd:image ls}", code="image.not_found")
    err.message = f"creating VM x: {err.message}"
    err.hint = f"{err.hint} (or import one)"
    assert err.message == "creating VM x: no image --image"
    assert err.to_dict(front="api")["message"] == "creating VM x: no image image"
    assert err.to_dict(front="api")["hint"] == "list them: `image ls` (or import one)"


def test_every_kind_has_a_default_code_and_an_explicit_one_wins() -> None:
    assert [k("x").code for k in (KvmhubError, OperationFailed, InvalidInput, NotFound, Conflict, HostProblem,
                                  OperationTimeout)] == [
        "failed", "failed", "input.invalid", "not_found", "conflict", "host.problem", "timeout"]
    assert NotFound("no VM named 'x'", code="vm.not_found").code == "vm.not_found"
