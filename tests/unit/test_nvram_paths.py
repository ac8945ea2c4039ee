"""Which NVRAM file a clone or an import names, and where import writes the archived one (this machine only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kvmhub.errors import Conflict
from kvmhub.hv import Hypervisor, host_files_here
from kvmhub.models import ExportManifest, ExportNvram
from kvmhub.models.events import Event, WarningEvent
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.storage.nvram import clone_path
from kvmhub.services.vm.export import _nvram_plan
from kvmhub.xml._util import parse

NEW = "/var/lib/libvirt/qemu/nvram/copy_VARS.fd"
UEFI = """<domain type='kvm'><name>src</name><memory>262144</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/src_VARS.fd</nvram></os>
</domain>"""


def manifest(with_nvram: bool = True) -> ExportManifest:
    data = b"archived variables"
    return ExportManifest(vm="src", uuid="0e4b1d3c-4f6a-4bd2-9a64-7d1ea2c3b4d5", created="2026-01-01T00:00:00+00:00",
                          domain_xml=UEFI, disks=[],
                          nvram=ExportNvram(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
                          if with_nvram else None)


@pytest.fixture
def host_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's files as kvmhub sees them, with an NVRAM file already at the new VM's path."""
    monkeypatch.setenv("KVMHUB_HOST_ROOT", str(tmp_path))
    existing = tmp_path / NEW.lstrip("/")
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"another VM's variables")
    return existing


@pytest.mark.parametrize(("uri", "here"), [
    ("qemu:///system", True), ("qemu+unix:///system?socket=/run/x/libvirt-sock", True),
    ("qemu+ssh://root@far/system", False), ("qemu+tls://far.example/system", False), ("test:///default", False),
])
def test_only_a_local_host_has_its_files_here(uri: str, here: bool) -> None:
    assert host_files_here(uri) is here


@pytest.mark.parametrize("uri", ["qemu+ssh://root@far/system", "test:///default"])
def test_import_on_another_host_neither_checks_nor_writes_this_machines_nvram(host_files: Path, uri: str) -> None:
    said: list[Event] = []
    path, write = _nvram_plan(Hypervisor(uri), manifest(), "copy", Reporter(said.append))
    assert (path, write) == (NEW, False)  # the definition names the new VM's file; libvirt makes it there
    assert host_files.read_bytes() == b"another VM's variables"
    warnings = [e.message for e in said if isinstance(e, WarningEvent)]
    assert any("NVRAM (UEFI variables) is not written on another host" in w for w in warnings), said


def test_import_on_this_machine_refuses_an_existing_nvram_file(host_files: Path) -> None:
    with pytest.raises(Conflict, match=f"NVRAM file {NEW} already exists"):
        _nvram_plan(Hypervisor("qemu:///system"), manifest(), "copy", QUIET)
    host_files.unlink()
    local = Hypervisor("qemu:///system")
    assert _nvram_plan(local, manifest(), "copy", QUIET) == (NEW, True)
    assert _nvram_plan(local, manifest(with_nvram=False), "copy", QUIET) == (NEW, False)


def test_a_clone_names_its_own_nvram_even_when_there_is_no_file_to_copy() -> None:
    # the source never started (no file yet) or is remote: the clone must still not share the source's file
    assert clone_path(parse(UEFI, "domain"), "copy") == NEW
    assert clone_path(parse("<domain type='kvm'><name>bios</name><os><type>hvm</type></os></domain>", "domain"),
                      "copy") is None
