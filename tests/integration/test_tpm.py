"""`create --tpm` on a real libvirtd: libvirt runs swtpm for the VM, the tiny guest's kernel finds a TPM 2.0 on
the CRB interface, and `show` reports the device."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner
from tests.integration.guest import guest_sh

VM = "vm-tpm"


@pytest.fixture(scope="module")
def tpm_vm(prepared_host: TestHost, kvmhub: Runner) -> Iterator[str]:
    r = kvmhub("create", VM, "--image", "tiny", "--network", LAB_NET, "--memory", "256M", "--tpm", "--wait",
               "--timeout", "240")
    assert r.code == 0, r.err
    try:
        yield VM
    finally:
        kvmhub("rm", VM)


def test_the_guest_sees_a_tpm_2(prepared_host: TestHost, tpm_vm: str) -> None:
    out = guest_sh(prepared_host, tpm_vm, "ls /sys/class/tpm; cat /sys/class/tpm/tpm0/tpm_version_major")
    assert out.split() == ["tpm0", "2"]


def test_show_reports_the_tpm(kvmhub: Runner, tpm_vm: str) -> None:
    r = kvmhub("show", tpm_vm, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["tpm"] == {"model": "tpm-crb", "backend": "emulator", "version": "2.0"}
    r = kvmhub("show", tpm_vm)
    assert "tpm: TPM 2.0 (tpm-crb, emulator)" in r.out
