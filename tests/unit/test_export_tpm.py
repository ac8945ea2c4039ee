"""An emulated TPM's swtpm state in export archives, without a real host: what export reads (and says when it
cannot), how import checks the archive's TPM members as untrusted input, and how the state is written under the
new VM's UUID for libvirt's swtpm user (and taken back on undo). The real round trip is
tests/integration/test_export_tpm.py."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from kvmhub.errors import Conflict, InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.models import CreateRequest
from kvmhub.models.export import TPM_FILE_MAX_BYTES, ExportTpm, ExportTpmFile
from kvmhub.ops import actions
from kvmhub.ops.actions import Action, Context
from kvmhub.reporting import Reporter
from kvmhub.services.vm import create as vm_create
from kvmhub.services.vm import export_tpm, tpm
from kvmhub.xml import domain_to_xml
from kvmhub.xml._util import Element, parse
from kvmhub.xml.hostbound import unexportable

URI = "test:///default"
UUID = "0d1c2b3a-4f5e-4a6b-9c8d-7e6f5a4b3c2d"
NEW = "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
PERMALL = b"\x00\x01 tpm2 permanent state"


def _tree(with_tpm: bool = True) -> Element:
    spec = vm_create.build_spec(CreateRequest(name="t1", image="tiny", tpm=with_tpm), 256, "qemu", UUID)
    return parse(domain_to_xml(spec), "domain")


class _Said(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def warn(self, message: str, code: str | None = None) -> None:
        self.warnings.append(message)


class _Steps:
    def __init__(self) -> None:
        self.undos: list[Action] = []

    def add(self, description: str, undo: Any = None) -> None:
        assert isinstance(undo, Action), description
        self.undos.append(undo)

    def made(self, **params: Any) -> None:
        self.undos[-1].params.update(params)


class _LocalHv:
    uri = "qemu:///system"


LOCAL = cast(Hypervisor, _LocalHv())  # a host whose files are this machine's (under KVMHUB_HOST_ROOT)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A host root in tmp_path: libvirt's qemu.conf naming swtpm's user, its passwd and group files."""
    monkeypatch.setenv("KVMHUB_HOST_ROOT", str(tmp_path))
    (tmp_path / "etc/libvirt").mkdir(parents=True)
    (tmp_path / "etc/libvirt/qemu.conf").write_text('#swtpm_user = "tss"\nswtpm_user = "swtpm"\n')
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nswtpm:x:4321:7::/:/bin/false\n")
    (tmp_path / "etc/group").write_text("root:x:0:\ntss:x:8765:\n")
    return tmp_path


def _source_state(root: Path) -> None:
    where = root / tpm.state_dir(UUID).lstrip("/")
    (where / "tpm2").mkdir(parents=True)
    (where / "tpm2" / "tpm2-00.permall").write_bytes(PERMALL)
    (where / "tpm2" / ".lock").write_bytes(b"")


def test_export_reads_the_state_files_but_not_the_lock(host: Path) -> None:
    _source_state(host)
    said = _Said()
    state = export_tpm.read_state(LOCAL, _tree(), UUID, said)
    assert [(f.name, data) for f, data in state] == [("tpm2/tpm2-00.permall", PERMALL)]
    assert state[0][0].sha256 == hashlib.sha256(PERMALL).hexdigest() and said.warnings == []
    manifest = export_tpm.manifest_of(state)
    assert manifest is not None and manifest.files[0].member == "tpm/tpm2/tpm2-00.permall"


def test_export_says_when_the_imported_tpm_will_start_empty(host: Path) -> None:
    said = _Said()
    assert export_tpm.read_state(LOCAL, _tree(), UUID, said) == []
    assert said.warnings == ["the VM's TPM has no state yet (it never ran); the imported VM's TPM starts empty"]
    with Hypervisor(URI) as hv:
        said = _Said()
        assert export_tpm.read_state(hv, _tree(), UUID, said) == []
    assert said.warnings == ["the TPM state of a VM on another host is not exported; the imported VM's TPM "
                             "starts empty"]
    said = _Said()
    assert export_tpm.read_state(LOCAL, _tree(with_tpm=False), UUID, said) == []
    assert said.warnings == []


def test_export_refuses_state_beyond_what_import_accepts(host: Path) -> None:
    _source_state(host)
    (host / tpm.state_dir(UUID).lstrip("/") / "tpm2" / "huge").write_bytes(b"x" * (TPM_FILE_MAX_BYTES + 1))
    with pytest.raises(Conflict, match="larger than an export carries"):
        export_tpm.read_state(LOCAL, _tree(), UUID, _Said())


def test_an_emulated_tpm_no_longer_refuses_an_export_but_passthrough_does() -> None:
    assert unexportable(_tree()) == []
    tree = _tree()
    backend = tree.find("devices/tpm/backend")
    assert backend is not None
    backend.set("type", "passthrough")
    assert [t.what for t in unexportable(tree)] == ["TPM passthrough"]


@pytest.mark.parametrize("name", ["../../etc/shadow", "/etc/shadow", "tpm2/../../x", ".hidden", "a/b/c", "tpm2/",
                                  "x" * 65])
def test_the_manifest_refuses_names_that_leave_the_state_directory(name: str) -> None:
    with pytest.raises(ValidationError):
        ExportTpmFile(name=name, bytes=1, sha256="0" * 64)


def test_the_manifest_bounds_the_state() -> None:
    entry = ExportTpmFile(name="tpm2-00.permall", bytes=1, sha256="0" * 64)
    with pytest.raises(ValidationError):
        ExportTpm(files=[entry] * 17)
    with pytest.raises(ValidationError):
        ExportTpmFile(name="tpm2-00.permall", bytes=TPM_FILE_MAX_BYTES + 1, sha256="0" * 64)


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> tarfile.TarFile:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw.seek(0)
    return tarfile.open(fileobj=raw, mode="r|")


def _regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _refuse(why: str) -> InvalidInput:
    return InvalidInput(f"not a safe kvmhub export: {why}")


ENTRY = ExportTpmFile(name="tpm2/tpm2-00.permall", bytes=len(PERMALL), sha256=hashlib.sha256(PERMALL).hexdigest())


def test_import_reads_the_members_its_manifest_names() -> None:
    tar = _tar([_regular(ENTRY.member, PERMALL)])
    assert export_tpm.read_members(tar, ExportTpm(files=[ENTRY]), _tree(), _refuse) == {ENTRY.name: PERMALL}


def _link(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    return info, b""


@pytest.mark.parametrize(("members", "said"), [
    ([_link(ENTRY.member)], "tpm/tpm2/tpm2-00.permall is missing or not what its manifest says"),
    ([_regular("tpm/tpm2/other", PERMALL)], "is missing or not what its manifest says"),
    ([_regular(ENTRY.member, PERMALL + b"!")], "is missing or not what its manifest says"),
    ([_regular(ENTRY.member, PERMALL[:-1] + b"!")], "tpm/tpm2/tpm2-00.permall does not match its checksum"),
    ([], "is missing"),
])
def test_import_refuses_tpm_members_that_are_not_what_the_manifest_says(
        members: list[tuple[tarfile.TarInfo, bytes]], said: str) -> None:
    with pytest.raises(InvalidInput, match=said):
        export_tpm.read_members(_tar(members), ExportTpm(files=[ENTRY]), _tree(), _refuse)


def test_import_refuses_tpm_state_for_a_vm_without_a_tpm() -> None:
    tar = _tar([_regular(ENTRY.member, PERMALL)])
    with pytest.raises(InvalidInput, match="no emulated TPM"):
        export_tpm.read_members(tar, ExportTpm(files=[ENTRY]), _tree(with_tpm=False), _refuse)


def test_import_refuses_a_file_named_twice() -> None:
    tar = _tar([_regular(ENTRY.member, PERMALL), _regular(ENTRY.member, PERMALL)])
    with pytest.raises(InvalidInput, match="appears twice"):
        export_tpm.read_members(tar, ExportTpm(files=[ENTRY, ENTRY]), _tree(), _refuse)


def test_the_state_is_written_for_swtpms_user_and_taken_back_on_undo(host: Path) -> None:
    assert tpm.swtpm_owner() == (4321, 8765)
    steps = _Steps()
    assert export_tpm.restore(LOCAL, NEW, {ENTRY.name: PERMALL}, steps, _Said())
    top = host / tpm.state_dir(NEW).lstrip("/")
    written = top / "tpm2" / "tpm2-00.permall"
    assert written.read_bytes() == PERMALL and written.stat().st_mode & 0o777 == 0o600
    assert top.stat().st_mode & 0o777 == 0o700 and (top / "tpm2").stat().st_mode & 0o777 == 0o700
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (top, top / "tpm2", written)} == {(4321, 8765)}
    with pytest.raises(Conflict, match="already exists"):
        tpm.write_state(NEW, {ENTRY.name: PERMALL}, _Steps())
    with Hypervisor(URI) as hv:
        [undo] = steps.undos
        actions.run(Context(hv, str(host)), undo)
    assert not top.exists()


def test_swtpm_runs_as_tss_unless_qemu_conf_says_otherwise(host: Path) -> None:
    (host / "etc/libvirt/qemu.conf").write_text("")
    (host / "etc/passwd").write_text("tss:x:104:108::/var/lib/tpm:/bin/false\n")
    (host / "etc/group").write_text("tss:x:108:\n")
    assert tpm.swtpm_owner() == (104, 108)
    (host / "etc/libvirt/qemu.conf").write_text('swtpm_user = "+200"\nswtpm_group = "nobody-here"\n')
    assert tpm.swtpm_owner() == (200, 0)


def test_the_state_is_not_written_on_another_host() -> None:
    said = _Said()
    with Hypervisor(URI) as hv:
        assert not export_tpm.restore(hv, NEW, {ENTRY.name: PERMALL}, _Steps(), said)
    assert said.warnings == ["the archived TPM state is not written on another host; the imported VM's TPM "
                             "starts empty"]
