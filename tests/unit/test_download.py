"""Image sources without libvirt: streaming, checksums, xz/gzip by magic bytes, HTTP failures, header sniffing."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
from pathlib import Path

import pytest

from kvmhub.errors import HostProblem, InvalidInput, NotFound, OperationFailed
from kvmhub.tools import download, qemu_img
from kvmhub.tools.download import Checksum, fetch
from tests.http_files import Reply, serve

# 6 MiB: two read chunks, with a zero run in the middle that must stay a hole
DATA = os.urandom(1024 * 1024) + bytes(4 * 1024 * 1024) + os.urandom(1024 * 1024) + b"tail"
SHA256 = hashlib.sha256(DATA).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def test_checksums_are_validated() -> None:
    assert Checksum.parse("sha256", SHA256.upper()).hexdigest == SHA256
    assert Checksum.parse("sha256", f"sha256:{SHA256}").hexdigest == SHA256
    assert Checksum.parse("sha512", "a" * 128).algorithm == "sha512"
    for bad in ("abc", "g" * 64, SHA256 + "0"):
        with pytest.raises(InvalidInput, match="invalid sha256 checksum"):
            Checksum.parse("sha256", bad)
    with pytest.raises(InvalidInput, match="unknown checksum type"):
        Checksum.parse("md5", "a" * 32)


def test_compression_is_told_by_magic_bytes() -> None:
    assert download.compression_of(lzma.compress(b"x")) == "xz"
    assert download.compression_of(gzip.compress(b"x")) == "gz"
    assert download.compression_of(b"QFI\xfb\0\0\0\3") is None
    with pytest.raises(InvalidInput, match="zstd-compressed"):
        download.compression_of(b"\x28\xb5\x2f\xfd\0\0")


def test_a_local_file_is_used_in_place_and_hashed(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    got = fetch(str(src), work)
    assert got.path == src and not got.temporary and got.compression is None
    assert got.sha256() == SHA256
    assert list(work.iterdir()) == []  # no copy made
    checked = fetch(str(src), work, expected=Checksum.parse("sha256", SHA256))
    assert checked.sha256() == SHA256


def test_a_checksum_mismatch_names_expected_and_actual(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    wrong = "0" * 64
    with pytest.raises(InvalidInput) as exc:
        fetch(str(src), work, expected=Checksum.parse("sha256", wrong))
    assert f"expected sha256 {wrong}, got {SHA256}" in str(exc.value)
    wrong512 = "f" * 128
    with pytest.raises(InvalidInput, match=f"got {hashlib.sha512(DATA).hexdigest()}"):
        fetch(str(src), work, expected=Checksum.parse("sha512", wrong512))


@pytest.mark.parametrize("kind", ["xz", "gz"])
def test_compressed_files_are_decompressed_sparse_by_magic(kind: str, tmp_path: Path, work: Path) -> None:
    # two concatenated streams/members, as parallel compressors write them; named without a suffix
    packed = (lzma.compress(DATA[:3000000]) + lzma.compress(DATA[3000000:]) if kind == "xz"
              else gzip.compress(DATA[:3000000]) + gzip.compress(DATA[3000000:]))
    src = tmp_path / f"disk.raw.{kind}"
    src.write_bytes(packed)
    got = fetch(str(src), work, expected=Checksum.parse("sha256", sha256(packed)))
    assert got.temporary and got.path.parent == work and got.compression == kind
    assert got.name == "disk.raw"
    assert got.path.read_bytes() == DATA
    assert got.sha256() == sha256(packed)  # the checksum is of the file as published
    assert got.path.stat().st_blocks * 512 < len(DATA) - 3 * 1024 * 1024  # the zero run is a hole


def test_a_truncated_xz_is_refused(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "disk.xz"
    src.write_bytes(lzma.compress(DATA)[:-100])
    with pytest.raises(InvalidInput, match="not a valid xz file"):
        fetch(str(src), work)


def test_a_full_disk_is_a_clear_error(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "disk.gz"
    src.write_bytes(gzip.compress(DATA))
    (work / "source").symlink_to("/dev/full")
    with pytest.raises(HostProblem, match="no space left"):
        fetch(str(src), work)


def test_only_http_and_https_urls_are_fetched(work: Path) -> None:
    for url in ("file:///etc/passwd", "ftp://example.org/x.img", "gopher://h/x"):
        with pytest.raises(InvalidInput, match="URLs are not supported"):
            fetch(url, work)
    with pytest.raises(InvalidInput, match="not a readable file"):
        fetch(str(work / "missing.img"), work)


def test_downloads_stream_hash_and_decompress(work: Path) -> None:
    packed = lzma.compress(DATA)
    seen: list[tuple[str, int, int | None]] = []
    with serve({"/d.img": Reply(DATA), "/d.img.xz": Reply(packed)}) as base:
        got = fetch(f"{base}/d.img", work, expected=Checksum.parse("sha256", SHA256),
                    progress=lambda *a: seen.append(a))
        assert got.path.read_bytes() == DATA and got.source == f"{base}/d.img" and got.name == "d.img"
        assert seen[-1] == ("downloading", len(DATA), len(DATA))
        got.path.unlink()
        got = fetch(f"{base}/d.img.xz", work)
        assert got.path.read_bytes() == DATA and got.compression == "xz" and got.sha256() == sha256(packed)


def test_http_failures_are_clear(work: Path) -> None:
    files = {
        "/cut.img": Reply(DATA[:100000], claimed_length=len(DATA)),
        "/broken": Reply(b"", status=500),
        "/to-ftp": Reply(b"", status=302, location="ftp://127.0.0.1/x.img"),
    }
    with serve(files) as base:
        with pytest.raises(NotFound, match="HTTP 404"):
            fetch(f"{base}/missing.qcow2", work)
        with pytest.raises(OperationFailed, match="HTTP 500"):
            fetch(f"{base}/broken", work)
        with pytest.raises(OperationFailed, match="cut short: 100000 of"):
            fetch(f"{base}/cut.img", work)
        with pytest.raises(InvalidInput, match="ftp: URLs are not supported"):
            fetch(f"{base}/to-ftp", work)
    with pytest.raises(OperationFailed, match="cannot reach"):
        fetch(base + "/gone", work)


def test_headers_name_their_format(tmp_path: Path) -> None:
    def sniff(data: bytes) -> str:
        path = tmp_path / "f"
        path.write_bytes(data)
        return qemu_img.sniff_format(path)

    assert sniff(b"QFI\xfb\0\0\0\3" + bytes(600)) == "qcow2"
    assert sniff(b"QFI\xfb\0\0\0\1" + bytes(600)) == "qcow"
    assert sniff(b"KDMV" + bytes(600)) == "vmdk"
    assert sniff(b"# Disk DescriptorFile\nversion=1\nRW 8 FLAT \"/etc/passwd\" 0\n") == "vmdk-descriptor"
    assert sniff(b"# made by hand\n\n version=1\nRW 8 FLAT \"/dev/sda\" 0\n") == "vmdk-descriptor"
    assert sniff(bytes(0x40) + b"\x7f\x10\xda\xbe" + bytes(600)) == "vdi"
    assert sniff(bytes(4096) + b"conectix" + bytes(504)) == "vpc"  # a fixed VHD's footer
    assert sniff(b"LUKS\xba\xbe" + bytes(600)) == "luks"
    assert sniff(bytes(4096)) == "raw"


def test_formats_that_lie_or_point_away_are_refused(tmp_path: Path) -> None:
    desc = tmp_path / "d.vmdk"
    desc.write_bytes(b"# Disk DescriptorFile\nversion=1\nRW 8 FLAT \"/etc/passwd\" 0\n")
    with pytest.raises(InvalidInput, match="VMDK descriptor"):
        qemu_img.check_format(desc, "vmdk")
    raw = tmp_path / "r.img"
    raw.write_bytes(bytes(65536))
    with pytest.raises(InvalidInput, match="header says raw"):
        qemu_img.check_format(raw, "qcow2")
    luks = tmp_path / "l.img"
    luks.write_bytes(b"LUKS\xba\xbe" + bytes(4096))
    with pytest.raises(InvalidInput, match="luks image"):
        qemu_img.check_format(luks, "raw")


def _qemu_img(*args: str) -> None:
    import subprocess

    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def test_every_step_reads_the_file_opened_once(tmp_path: Path, work: Path) -> None:
    from kvmhub.tools.filecopy import copy_file

    src = tmp_path / "disk.img"
    src.write_bytes(DATA)
    with fetch(str(src), work) as got:
        # the path is swapped for a qcow2 pointing at a host file after the source was opened
        evil = tmp_path / "evil.qcow2"
        _qemu_img("create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", "-u", str(evil), "16M")
        evil.rename(src)
        with pytest.raises(InvalidInput, match="backing file"):
            qemu_img.check_safe(src, "qcow2")  # what a second open of the path would see
        assert qemu_img.sniff_format(got.fd) == "raw"
        sectors = -(-len(DATA) // 512) * 512  # qemu-img counts whole sectors
        assert qemu_img.check_safe(got.fd, "raw", label=got.source)["virtual-size"] == sectors
        assert got.sha256() == SHA256
        dst = tmp_path / "stored"
        dst.touch()
        copy_file(got.fd, dst, what="the test pool")
        assert dst.read_bytes() == DATA
        converted = tmp_path / "converted.qcow2"
        qemu_img.convert(got.fd, "raw", converted, progress=lambda _p: None, label=got.source)
        assert qemu_img.check_safe(converted, "qcow2")["virtual-size"] == sectors
    assert got.fd == -1


def test_a_file_others_can_rewrite_is_copied_first(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "shared.img"
    src.write_bytes(DATA)
    src.chmod(0o666)
    with fetch(str(src), work, expected=Checksum.parse("sha256", SHA256)) as got:
        assert (work / "source").read_bytes() == DATA
        src.write_bytes(b"rewritten" + DATA[9:])  # changes after the copy do not reach the import
        assert os.pread(got.fd, 9, 0) == DATA[:9] and got.sha256() == SHA256
        assert got.source == str(src)


def test_only_regular_files_are_opened(tmp_path: Path, work: Path) -> None:
    fifo = tmp_path / "pipe.img"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="not a regular file"):
        fetch(str(fifo), work)  # refused without waiting for a writer
    with pytest.raises(InvalidInput, match="not a readable file"):
        fetch(str(tmp_path), work)


def test_a_vmdk_checked_through_its_descriptor_is_self_contained(tmp_path: Path, work: Path) -> None:
    vmdk = tmp_path / "disk.vmdk"
    _qemu_img("create", "-f", "vmdk", str(vmdk), "4M")
    with fetch(str(vmdk), work) as got:
        assert qemu_img.check_safe(got.fd, "vmdk", label=got.source)["virtual-size"] == 4 * 1024**2


def test_a_failing_qemu_img_names_the_command_to_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"QFI\xfb" + bytes(600))
    with pytest.raises(OperationFailed) as exc:
        qemu_img.info(bad, "qcow2")
    assert exc.value.hint and f"qemu-img info -f qcow2 {bad}" in exc.value.hint
    assert exc.value.original and "qcow2" in exc.value.original  # qemu-img's own words are kept
