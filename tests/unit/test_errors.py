"""libvirt failures become kvmhub errors naming cause and fix; each kind maps to one exit code and status."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import libvirt
import pytest

import kvmhub
from kvmhub import errors
from kvmhub.errors import (
    CODES,
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
    with pytest.raises(NotFound) as missing:
        hv_domains.lookup(hv, "no-such-vm")
    assert missing.value.code == "vm.not_found"
    dom = hv_domains.lookup(hv, "test")
    with pytest.raises(Conflict) as info:
        dom.start()
    assert "already" in info.value.message and info.value.code == "vm.wrong_state"
    hv.close()


def test_unreachable_daemon_is_a_host_problem(tmp_path: object) -> None:
    hv = Hypervisor(f"qemu+unix:///system?socket={tmp_path}/nothing-here")
    with pytest.raises(HostProblem) as info:
        hv_domains.list_all(hv)
    assert "libvirtd -d" in (info.value.hint or "")
    assert info.value.code == "host.libvirtd_unreachable"


def test_a_stalled_call_times_out_instead_of_hanging() -> None:
    import threading

    never = threading.Event()
    with pytest.raises(OperationTimeout) as info:
        run_bounded(lambda: never.wait(30), 0.2, "listing VMs")
    never.set()  # the stalled call lands (its worker ends)
    assert "no answer from libvirt" in info.value.message
    assert info.value.to_dict()["code"] == "libvirt.timeout"


def test_bounded_calls_reuse_their_threads_and_a_stalled_one_is_waited_for_by_settle() -> None:
    import threading

    from kvmhub.hv import Hypervisor

    run_bounded(lambda: None, 5, "warm up")
    before = threading.active_count()
    assert [run_bounded(lambda: i * 2, 5, "sum") for i in range(50)]  # noqa: B023 - called at once == [i * 2 for i in range(50)]
    assert threading.active_count() == before  # one worker served all fifty
    release = threading.Event()
    with pytest.raises(OperationTimeout):
        run_bounded(lambda: release.wait(30), 0.1, "stalled")
    assert run_bounded(lambda: "next", 5, "next call") == "next"  # a fresh worker, not the stuck one
    hv = Hypervisor("test:///default")
    assert hv.settle(0.1) is False  # the stalled call has not landed
    release.set()
    assert hv.settle(5) is True  # it landed and its worker ended


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
    assert api["hint"] == ('raise it with `PATCH /api/v1/vms/web` with `{"max_cpus": 8, "live": true}`, '
                           "or see `kvmhub host setup`; `virsh vcpucount web`")
    assert "--" not in (api["cause"] or "")


def test_a_rewrapped_message_keeps_its_terms() -> None:
    err = NotFound("no image {opt:image}", hint="list them: {cmd:image ls}", code="image.not_found")
    err.message = f"creating VM x: {err.message}"
    err.hint = f"{err.hint} (or import one)"
    assert err.message == "creating VM x: no image --image"
    assert err.to_dict(front="api")["message"] == "creating VM x: no image image"
    assert err.to_dict(front="api")["hint"] == "list them: `GET /api/v1/images` (or import one)"


def test_every_kind_has_a_default_code_and_an_explicit_one_wins() -> None:
    assert [k("x").code for k in (KvmhubError, OperationFailed, InvalidInput, NotFound, Conflict, HostProblem,
                                  OperationTimeout)] == [
        "failed", "failed", "input.invalid", "not_found", "conflict", "host.problem", "timeout"]
    assert NotFound("no VM named 'x'", code="vm.not_found").code == "vm.not_found"


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (libvirt.VIR_ERR_NO_DOMAIN, "Domain not found", "vm.not_found"),
        (libvirt.VIR_ERR_NO_NETWORK, "Network not found", "network.not_found"),
        (libvirt.VIR_ERR_NO_STORAGE_POOL, "Storage pool not found", "pool.not_found"),
        (libvirt.VIR_ERR_NO_STORAGE_VOL, "Storage volume not found", "volume.not_found"),
        (libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT, "Domain snapshot not found", "snapshot.not_found"),
        (libvirt.VIR_ERR_OPERATION_INVALID, "domain 'x' already exists with uuid 1234", "name.taken"),
        (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running",
         "vm.wrong_state"),
        (libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused",
         "host.libvirtd_unreachable"),
        (libvirt.VIR_ERR_OPERATION_TIMEOUT, "Timed out during operation", "libvirt.timeout"),
        (libvirt.VIR_ERR_XML_ERROR, "XML error: bad disk", "libvirt.refused"),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "something odd", "failed"),
    ],
)
def test_translated_errors_carry_their_code(code: int, message: str, expected: str) -> None:
    err = translate(fake(code, message), "doing x")
    assert err.code == expected
    assert err.to_dict(front="api")["code"] == expected


_KINDS = {k.__name__: k for k in (KvmhubError, InvalidInput, NotFound, Conflict, HostProblem, OperationTimeout,
                                  OperationFailed)}


def _codes_in_source() -> list[tuple[str, str, str]]:
    """(code, kind, where) for every literal ``code="..."`` given to an error or a translation rule in src/."""
    found = []
    for path in sorted(Path(kvmhub.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            kind = func if func in _KINDS else None
            if func == "_Rule" and node.args and isinstance(node.args[0], ast.Name):
                kind = node.args[0].id
            for kw in node.keywords:
                if kw.arg == "code" and kind is not None:
                    value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                    assert isinstance(value, str), f"{path}:{node.lineno}: a code is a literal"
                    found.append((value, kind, f"{path.name}:{node.lineno}"))
    return found


def test_codes_are_well_formed_documented_and_mean_one_kind_of_error() -> None:
    documented = set(re.findall(r"^    ([a-z_.]+) {2,}\S", errors.__doc__ or "", re.MULTILINE))
    assert documented == set(CODES)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*(\.[a-z]+(_[a-z]+)*)?", c) for c in CODES)
    used = _codes_in_source()
    assert len(used) > 60
    kinds_of: dict[str, set[str]] = {}
    for code, kind, where in used:
        assert code in CODES, f"{where}: {code!r} is not in errors.CODES"
        kinds_of.setdefault(code, set()).add(kind)
    for klass in _KINDS.values():
        assert klass.default_code in CODES
        kinds_of.setdefault(klass.default_code, set()).add(klass.__name__)
    kinds_of["failed"] -= {"KvmhubError"}  # the root's default is OperationFailed's too
    assert {c: k for c, k in kinds_of.items() if len(k) > 1} == {}
