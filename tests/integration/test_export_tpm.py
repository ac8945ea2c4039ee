"""`export` carries an emulated TPM's state and `import` restores it under the new VM's UUID, on a real libvirtd.

The tiny guest has no TPM tools, so it speaks TPM 2.0 commands to /dev/tpm0 itself (bytes written with printf,
the answer read back with od): it defines an NV index in the source VM's TPM and writes 8 bytes into it. After
export and import as a copy, the copy's guest reads the same bytes from its own TPM, and its swtpm state file on
the host equals the source's."""

from __future__ import annotations

import hashlib
import json
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmhub.testing import TestHost
from tests.integration.conftest import Runner, tiny_vm
from tests.integration.guest import guest_sh

VM = "vm-tpmx"
COPY = "vm-tpmx-copy"
SWTPM = "var/lib/libvirt/swtpm"
SECRET = b"kvmhub!!"
NV_INDEX = 0x01500016
OWNER, PASSWORD_SESSION = 0x40000001, 0x40000009
OWNER_RW = 0x00020002  # TPMA_NV_OWNERREAD | TPMA_NV_OWNERWRITE
PW_AUTH = struct.pack(">IIHBH", 9, PASSWORD_SESSION, 0, 0, 0)  # the empty owner password


def _command(code: int, handles: bytes, params: bytes) -> bytes:
    body = handles + PW_AUTH + params
    return struct.pack(">HII", 0x8002, 10 + len(body), code) + body


def _tpm(host: TestHost, vm: str, cmd: bytes) -> bytes:
    """Send one command to the guest's /dev/tpm0; its answer, whose response code must be TPM_RC_SUCCESS."""
    octal = "".join(f"\\{b:03o}" for b in cmd)
    out = guest_sh(host, vm, f"exec 3<>/dev/tpm0; printf '{octal}' >&3; dd bs=4096 count=1 <&3 2>/dev/null "
                             "| od -An -tx1 -v")
    answer = bytes.fromhex("".join(out.split()))
    assert struct.unpack(">I", answer[6:10])[0] == 0, answer.hex()
    return answer


def _nv_read(host: TestHost, vm: str) -> bytes:
    answer = _tpm(host, vm, _command(0x14E, struct.pack(">II", OWNER, NV_INDEX), struct.pack(">HH", 8, 0)))
    return answer[16:24]  # after the header, parameterSize and the TPM2B's size


def _state(host: TestHost, kvmhub: Runner, vm: str) -> dict[str, str]:
    """The VM's swtpm state files on the host (not its logs), by path inside its state directory, as SHA-256."""
    r = kvmhub("show", vm, "--json")
    assert r.code == 0, r.err
    where = host.host_root / SWTPM / json.loads(r.out)["uuid"]
    return {str(p.relative_to(where)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(where.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def archive(prepared_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`vm-tpmx` made with --tpm, 8 bytes written in an NV index of its TPM, stopped and exported."""
    with tiny_vm(kvmhub, VM, "--tpm"):
        try:
            public = struct.pack(">IHIHH", NV_INDEX, 0x000B, OWNER_RW, 0, len(SECRET))
            _tpm(prepared_host, VM, _command(0x12A, struct.pack(">I", OWNER),
                                             struct.pack(">H", 0) + struct.pack(">H", len(public)) + public))
            _tpm(prepared_host, VM, _command(0x137, struct.pack(">II", OWNER, NV_INDEX),
                                             struct.pack(">H", len(SECRET)) + SECRET + struct.pack(">H", 0)))
            assert _nv_read(prepared_host, VM) == SECRET
            r = kvmhub("stop", VM, "--timeout", "60")
            assert r.code == 0, r.err
            path = tmp_path_factory.mktemp("export-tpm") / f"{VM}.tar.gz"
            r = kvmhub("export", VM, "--to", str(path))
            assert r.code == 0, r.err
            yield path
        finally:
            kvmhub("rm", COPY)


def test_the_archive_holds_the_tpm_state(prepared_host: TestHost, kvmhub: Runner, archive: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        manifest = json.load(tar.extractfile("kvmhub-export.json"))  # type: ignore[arg-type]
        permall = tar.extractfile("tpm/tpm2/tpm2-00.permall").read()  # type: ignore[union-attr]
    assert [f["name"] for f in manifest["tpm"]["files"]] == ["tpm2/tpm2-00.permall"]
    assert members["tpm/tpm2/tpm2-00.permall"].isreg()
    source = _state(prepared_host, kvmhub, VM)
    assert hashlib.sha256(permall).hexdigest() == source["tpm2/tpm2-00.permall"]


def test_the_imported_copy_has_the_same_tpm(prepared_host: TestHost, kvmhub: Runner, archive: Path) -> None:
    r = kvmhub("import", str(archive), "--as", COPY)
    assert r.code == 0, r.err
    assert "TPM starts empty" not in r.err + r.out
    assert _state(prepared_host, kvmhub, COPY) == _state(prepared_host, kvmhub, VM)
    r = kvmhub("start", COPY, "--wait", "--timeout", "240")
    assert r.code == 0, r.err
    assert _nv_read(prepared_host, COPY) == SECRET  # the guest reads what the source guest wrote
