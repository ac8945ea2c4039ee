"""The NoCloud seed ISO builder, read back with pycdlib."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib
import pytest

from kvmhub.errors import InvalidInput
from kvmhub.tools.seed import SEED_LABEL, build_nocloud_seed, write_nocloud_seed

META = "instance-id: iid-0001\nlocal-hostname: web-1\n"
USER = "#cloud-config\nhostname: web-1\nruncmd:\n  - echo hello\n"
NET = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"


def _open(data: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


def _read(iso: pycdlib.PyCdlib, **path: str) -> str:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue().decode()


def _names(iso: pycdlib.PyCdlib, **root: str) -> set[str]:
    names: set[str] = set()
    for _dirpath, _dirs, files in iso.walk(**root):
        names.update(files)
    return names


def test_label_is_cidata_in_primary_and_joliet_descriptors() -> None:
    iso = _open(build_nocloud_seed(META, USER))
    try:
        assert iso.pvd.volume_identifier.decode().rstrip() == SEED_LABEL
        assert iso.joliet_vd is not None
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == SEED_LABEL
    finally:
        iso.close()


def test_rock_ridge_and_joliet_names_keep_their_spelling() -> None:
    iso = _open(build_nocloud_seed(META, USER))
    try:
        assert _names(iso, rr_path="/") == {"meta-data", "user-data"}
        assert _names(iso, joliet_path="/") == {"meta-data", "user-data"}
        assert _read(iso, rr_path="/meta-data") == META
        assert _read(iso, rr_path="/user-data") == USER
        assert _read(iso, joliet_path="/user-data") == USER
    finally:
        iso.close()


def test_optional_documents_are_written_only_when_given() -> None:
    iso = _open(build_nocloud_seed(META, USER, network_config=NET, vendor_data="#cloud-config\n"))
    try:
        assert _names(iso, rr_path="/") == {"meta-data", "user-data", "network-config", "vendor-data"}
        assert _read(iso, rr_path="/network-config") == NET
        assert _read(iso, rr_path="/vendor-data") == "#cloud-config\n"
    finally:
        iso.close()


def test_empty_documents_and_utf8_survive() -> None:
    text = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: grüße ☃\n"
    iso = _open(build_nocloud_seed("", text))
    try:
        assert _read(iso, rr_path="/meta-data") == ""
        assert _read(iso, rr_path="/user-data") == text
    finally:
        iso.close()


def test_same_input_gives_a_readable_iso_of_whole_sectors() -> None:
    data = build_nocloud_seed(META, USER)
    assert len(data) % 2048 == 0
    assert data[0x8001:0x8006] == b"CD001"


def test_non_text_document_is_refused() -> None:
    with pytest.raises(InvalidInput):
        build_nocloud_seed(META, b"#cloud-config\n")  # type: ignore[arg-type]


def test_write_nocloud_seed_writes_the_file(tmp_path: Path) -> None:
    target = write_nocloud_seed(tmp_path / "sub" / "seed.iso", META, USER)
    assert target == tmp_path / "sub" / "seed.iso"
    iso = _open(target.read_bytes())
    try:
        assert _read(iso, rr_path="/meta-data") == META
    finally:
        iso.close()
    assert [p.name for p in target.parent.iterdir()] == ["seed.iso"]
