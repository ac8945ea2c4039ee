"""`create --tpm` on a real libvirtd: libvirt runs swtpm for the VM, the tiny guest's kernel finds a TPM 2.0 on
the CRB interface, `show` reports the device, and `clone` carries the TPM's state to the clone's UUID."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner, tiny_vm
from tests.integration.guest import guest_sh

VM = "vm-tpm"
CLONE = "vm-tpm-c"
SWTPM = "var/lib/libvirt/swtpm"


@pytest.fixture(scope="module")
def tpm_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    with tiny_vm(kvmhub, VM, "--tpm"):
        try:
            yield VM
        finally:
            kvmhub("rm", CLONE)


def _state(host: TestHost, kvmhub: Runner, vm: str) -> dict[str, str]:
    """The VM's swtpm state files on the host, by path inside its state directory, as SHA-256."""
    r = kvmhub("show", vm, "--json")
    assert r.code == 0, r.err
    where = host.host_root / SWTPM / json.loads(r.out)["uuid"]
    return {str(p.relative_to(where)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(where).rglob("*")) if p.is_file() and not p.name.endswith(".log")}


def test_the_guest_sees_a_tpm_2(prepared_host: TestHost, tpm_vm: str) -> None:
    out = guest_sh(prepared_host, tpm_vm, "ls /sys/class/tpm; cat /sys/class/tpm/tpm0/tpm_version_major")
    assert out.split() == ["tpm0", "2"]


def test_show_reports_the_tpm(kvmhub: Runner, tpm_vm: str) -> None:
    r = kvmhub("show", tpm_vm, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["tpm"] == {"model": "tpm-crb", "backend": "emulator", "version": "2.0"}
    r = kvmhub("show", tpm_vm)
    assert "tpm: TPM 2.0 (tpm-crb, emulator)" in r.out


def test_clone_carries_the_tpm_state(prepared_host: TestHost, kvmhub: Runner, tpm_vm: str) -> None:
    r = kvmhub("stop", tpm_vm, "--force", "--timeout", "60")
    assert r.code == 0, r.err
    source = _state(prepared_host, kvmhub, tpm_vm)
    assert "tpm2/tpm2-00.permall" in source, source
    r = kvmhub("clone", tpm_vm, CLONE)
    assert r.code == 0, r.err
    assert "empty emulated TPM" not in r.err + r.out
    assert _state(prepared_host, kvmhub, CLONE) == source
