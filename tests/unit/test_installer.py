"""Installer media: finding the installer kernel and initrd in ISOs and trees, injecting kickstart and
preseed files into the initrd, the kernel arguments, and the checks on create's installer options."""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pycdlib
import pytest
from lxml import etree

from kvmhub.errors import InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.models import CreateRequest, HostMedia, TextDocument
from kvmhub.services.vm import installer
from kvmhub.tools import installer as media
from kvmhub.tools.tiny.cpio import CpioEntry, write_initramfs
from kvmhub.xml import domain_to_xml, lifecycle
from kvmhub.xml.domain import domain_from_xml

KERNEL = b"MZ fake kernel \x00\x01" * 64
KICKSTART = b"text\nlang en_US.UTF-8\nrootpw --plaintext s3cret\n%packages\n@core\n%end\n"
PRESEED = b"d-i debian-installer/locale string en_US\nd-i passwd/root-password password r00t\n"
ORIGINAL = {"init": b"#!/bin/sh\necho installer\n", "etc/motd": b"hello\n"}


def initrd_bytes(tmp: Path) -> bytes:
    """A gzip newc initrd like debian-installer's: /init, /etc and /etc/motd."""
    path = tmp / "orig-initrd.gz"
    write_initramfs(path, [
        CpioEntry("etc", stat.S_IFDIR | 0o755),
        CpioEntry("etc/motd", stat.S_IFREG | 0o644, ORIGINAL["etc/motd"]),
        CpioEntry("init", stat.S_IFREG | 0o755, ORIGINAL["init"]),
    ])
    return path.read_bytes()


def make_iso(dest: Path, files: dict[str, bytes], label: str = "TESTINST") -> Path:
    """An ISO with Rock Ridge names (as distributions ship them) holding ``files``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", vol_ident=label)
    dirs: dict[str, str] = {"": ""}  # Rock Ridge directory -> its ISO 9660 path
    for n, (rel, data) in enumerate(sorted(files.items())):
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            rr_dir = "/".join(parts[:depth])
            if rr_dir not in dirs:
                dirs[rr_dir] = f"{dirs['/'.join(parts[:depth - 1])]}/D{len(dirs)}"
                iso.add_directory(dirs[rr_dir], rr_name=parts[depth - 1])
        iso.add_fp(io.BytesIO(data), len(data), f"{dirs['/'.join(parts[:-1])]}/F{n}.;1", rr_name=parts[-1])
    iso.write(str(dest))
    iso.close()
    return dest


def _hv() -> Hypervisor:
    return Hypervisor("test:///default")


def _media(path: Path) -> HostMedia:
    return HostMedia(path=str(path))


@pytest.fixture
def debian_iso(tmp_path: Path) -> Path:
    return make_iso(tmp_path / "debian.iso", {
        "install.amd/vmlinuz": KERNEL,
        "install.amd/initrd.gz": initrd_bytes(tmp_path),
        "install.amd/gtk/vmlinuz": b"gtk kernel",
        "install.amd/gtk/initrd.gz": b"gtk initrd",
        "README.txt": b"debian-like",
    }, label="Debian 12.5.0 amd64 n")


@pytest.fixture
def fedora_iso(tmp_path: Path) -> Path:
    return make_iso(tmp_path / "fedora.iso", {
        "images/pxeboot/vmlinuz": KERNEL,
        "images/pxeboot/initrd.img": initrd_bytes(tmp_path),
        ".treeinfo": b"[general]\n",
    }, label="Fedora-S-dvd-x86_64-39")


def test_debian_netinst_layout_found_in_iso(debian_iso: Path, tmp_path: Path) -> None:
    with media.open_media(debian_iso) as m:
        found = media.find_boot_files(m)
        assert found.layout.family == "debian-installer"
        assert (found.layout.kernel, found.layout.initrd) == ("install.amd/vmlinuz", "install.amd/initrd.gz")
        assert found.volume_id == "Debian 12.5.0 amd64 n"
        m.extract(found.layout.kernel, tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == KERNEL


def test_fedora_pxeboot_layout_found_in_iso(fedora_iso: Path) -> None:
    with media.open_media(fedora_iso) as m:
        found = media.find_boot_files(m)
    assert found.layout.family == "anaconda"
    assert found.layout.initrd == "images/pxeboot/initrd.img"
    assert found.volume_id == "Fedora-S-dvd-x86_64-39"


def test_layout_found_in_a_directory_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "boot/x86_64/loader").mkdir(parents=True)
    (tree / "boot/x86_64/loader/linux").write_bytes(KERNEL)
    (tree / "boot/x86_64/loader/initrd").write_bytes(b"x")
    with media.open_media(tree) as m:
        found = media.find_boot_files(m)
    assert (found.layout.family, found.volume_id) == ("suse", None)


def test_plain_iso9660_names_are_matched(tmp_path: Path) -> None:
    iso = pycdlib.PyCdlib()
    iso.new(vol_ident="PLAIN")
    iso.add_directory("/IMAGES")
    iso.add_directory("/IMAGES/PXEBOOT")
    iso.add_fp(io.BytesIO(KERNEL), len(KERNEL), "/IMAGES/PXEBOOT/VMLINUZ.;1")
    iso.add_fp(io.BytesIO(b"i"), 1, "/IMAGES/PXEBOOT/INITRD.IMG;1")
    iso.write(str(tmp_path / "plain.iso"))
    iso.close()
    with media.open_media(tmp_path / "plain.iso") as m:
        found = media.find_boot_files(m)
        m.extract(found.layout.kernel, tmp_path / "k")
    assert found.layout.family == "anaconda"
    assert (tmp_path / "k").read_bytes() == KERNEL


def test_unknown_layout_refused_listing_what_was_looked_for(tmp_path: Path) -> None:
    iso = make_iso(tmp_path / "other.iso", {"boot/vmlinuz-lts": KERNEL, "boot/initramfs-lts": b"i"})
    with media.open_media(iso) as m, pytest.raises(InvalidInput) as err:
        media.find_boot_files(m)
    assert "no installer kernel and initrd" in err.value.message
    for looked in ("install.amd/vmlinuz", "casper/vmlinuz", "images/pxeboot/vmlinuz", "boot/x86_64/loader/linux"):
        assert looked in (err.value.cause or "")
    assert "--iso" in (err.value.hint or "")


def test_a_file_that_is_no_iso_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    with pytest.raises(InvalidInput, match="not an ISO 9660 image"):
        media.open_media(junk)


@pytest.mark.parametrize("kind", ["kickstart", "preseed"])
def test_injection_adds_the_file_and_keeps_the_original(tmp_path: Path, kind: media.AnswerKind) -> None:
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(initrd_bytes(tmp_path))
    original = initrd.read_bytes()
    data = KICKSTART if kind == "kickstart" else PRESEED
    media.inject(initrd, {media.ANSWER_FILES[kind]: data})
    result = initrd.read_bytes()
    assert result.startswith(original)  # the installer's own archive is untouched, byte for byte
    members = media.read_initrd(initrd)
    by_path = {m.path: m for m in members}
    name = "ks.cfg" if kind == "kickstart" else "preseed.cfg"
    assert by_path[name].data == data
    assert stat.S_ISREG(by_path[name].mode)
    assert by_path[name].segment == 1
    assert {p: by_path[p].data for p in ORIGINAL} == ORIGINAL
    assert [m.path for m in members if m.segment == 0] == ["etc", "etc/motd", "init"]


@pytest.mark.skipif(shutil.which("cpio") is None, reason="needs GNU cpio (package cpio)")
def test_injected_archive_reads_with_gnu_cpio(tmp_path: Path) -> None:
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(initrd_bytes(tmp_path))
    size = initrd.stat().st_size
    media.inject(initrd, {"ks.cfg": KICKSTART})
    tail = initrd.read_bytes()[size:].lstrip(b"\0")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=gzip.decompress(tail), cwd=out, check=True)
    assert (out / "ks.cfg").read_bytes() == KICKSTART


def test_uncompressed_and_xz_segments_are_read(tmp_path: Path) -> None:
    import lzma

    gz = tmp_path / "a.gz"
    write_initramfs(gz, [CpioEntry("early", stat.S_IFREG | 0o644, b"microcode")])
    plain = gzip.decompress(gz.read_bytes())
    write_initramfs(gz, [CpioEntry("main", stat.S_IFREG | 0o644, b"main")])
    xz = lzma.compress(gzip.decompress(gz.read_bytes()))
    initrd = tmp_path / "initrd"
    initrd.write_bytes(plain + b"\0" * (-len(plain) % 4) + xz)
    assert [(m.path, m.segment) for m in media.read_initrd(initrd)] == [("early", 0), ("main", 1)]


def test_damaged_initrd_is_reported(tmp_path: Path) -> None:
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(initrd_bytes(tmp_path)[:-20])
    with pytest.raises(InvalidInput, match="truncated"):
        media.read_initrd(initrd)


def boot_files(iso: Path) -> media.BootFiles:
    with media.open_media(iso) as m:
        return media.find_boot_files(m)


def test_preseed_kernel_arguments(debian_iso: Path) -> None:
    args = media.installer_cmdline(boot_files(debian_iso), media.AnswerFile("preseed", PRESEED), "hostname=web")
    assert args.split() == ["console=tty0", "console=ttyS0,115200n8", "auto=true", "priority=critical",
                            "hostname=web"]


def test_kickstart_kernel_arguments_name_the_iso_label(fedora_iso: Path) -> None:
    args = media.installer_cmdline(boot_files(fedora_iso), media.AnswerFile("kickstart", KICKSTART), None)
    assert args.split() == ["console=tty0", "console=ttyS0,115200n8",
                            "inst.stage2=hd:LABEL=Fedora-S-dvd-x86_64-39", "inst.ks=file:/ks.cfg"]


def test_labels_with_spaces_are_escaped_like_udev() -> None:
    assert media.label_for_cmdline("CentOS 7 x86_64") == "CentOS\\x207\\x20x86_64"


def test_answer_file_must_be_text(tmp_path: Path) -> None:
    binary = tmp_path / "ks.cfg"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InvalidInput, match="is not text"):
        media.read_answer_file(binary, "kickstart")
    empty = tmp_path / "empty.cfg"
    empty.write_text("  \n")
    with pytest.raises(InvalidInput, match="is empty"):
        media.read_answer_file(empty, "preseed")
    with pytest.raises(InvalidInput, match="cannot read"):
        media.read_answer_file(tmp_path / "missing.cfg", "preseed")


def test_answer_file_the_installer_does_not_read_is_refused(debian_iso: Path, tmp_path: Path) -> None:
    ks = tmp_path / "ks.cfg"
    ks.write_bytes(KICKSTART)
    req = CreateRequest(name="inst", location=_media(debian_iso), kickstart=media.read_answer_document(ks, "kickstart"))
    with pytest.raises(InvalidInput, match="does not read kickstart files") as err:
        installer.check(_hv(), req)
    assert "--preseed" in (err.value.hint or "")


def test_check_builds_the_plan_for_a_preseeded_install(debian_iso: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from kvmhub.services.vm import osinfo

    monkeypatch.setattr(osinfo, "detect_iso", lambda _p: None)
    seed = tmp_path / "p.cfg"
    seed.write_bytes(PRESEED)
    plan = installer.check(_hv(), CreateRequest(name="inst", location=_media(debian_iso),
                                                preseed=media.read_answer_document(seed, "preseed")))
    assert plan.kind == "location" and plan.one_shot
    assert plan.cdrom == debian_iso
    assert plan.answer == media.AnswerFile("preseed", PRESEED)
    assert plan.cmdline is not None and "auto=true priority=critical" in plan.cmdline
    assert plan.graphics is not None and (plan.graphics.listen, plan.graphics.port) == ("127.0.0.1", -1)
    assert plan.volumes("inst") == ["inst-install.iso", "inst-kernel", "inst-initrd"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"iso": "x.iso", "kernel": "k"}, "cannot be combined"),
        ({"iso": "x.iso", "image": "tiny"}, "--image cannot be used"),
        ({"preseed": "p.cfg"}, "need --location"),
        ({"kernel": "k", "extra_args": "x"}, "--extra-args needs --location"),
        ({"cmdline": "console=ttyS0"}, "need --kernel"),
        ({"image": "tiny", "vnc_port": 5901}, "need a VNC display"),
        ({"iso": "x.iso", "vnc_port": 5899}, "out of range"),
        ({"iso": "x.iso", "vnc_port": 70000}, "out of range"),
        ({"iso": "x.iso", "vnc_listen": "localhost; rm -rf /"}, "not an IP address"),
        ({"iso": "missing.iso"}, "is not a file"),
        ({"kernel": "k", "cmdline": "a\nb"}, "line break"),
    ],
)
def test_bad_installer_options_are_refused(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    (tmp_path / "x.iso").write_bytes(b"")
    (tmp_path / "k").write_bytes(KERNEL)
    (tmp_path / "p.cfg").write_bytes(PRESEED)
    for key in ("iso", "kernel"):
        if isinstance(fields.get(key), str):
            fields[key] = _media(tmp_path / str(fields[key]))
    if isinstance(fields.get("preseed"), str):
        fields["preseed"] = TextDocument(name=str(fields["preseed"]), text=PRESEED.decode())
    with pytest.raises(InvalidInput, match=message):
        installer.check(_hv(), CreateRequest(name="inst", **fields))  # type: ignore[arg-type]


def test_vnc_elsewhere_than_loopback_warns(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(KERNEL)
    plan = installer.check(_hv(), CreateRequest(name="k", kernel=_media(tmp_path / "k"), vnc=True,
                                                vnc_listen="192.0.2.7", vnc_port=5911))
    assert plan.graphics is not None and (plan.graphics.listen, plan.graphics.port) == ("192.0.2.7", 5911)
    assert any("without a password" in n for n in plan.notes)


def test_apply_boots_the_cdrom_first_on_a_free_target(tmp_path: Path) -> None:
    from kvmhub.models import DiskSource, DiskSpec, GraphicsSpec, VMSpec

    spec = VMSpec(name="cd", disks=[DiskSpec(target="vda", source=DiskSource(pool="default", volume="cd-disk0"))])
    plan = installer.Plan(kind="iso", cdrom=tmp_path / "x.iso", graphics=GraphicsSpec())
    out = installer.apply(spec, plan, "default", {"iso": "/p/cd-install.iso"})
    disk, cdrom = out.disks
    assert (disk.boot_order, cdrom.boot_order) == (2, 1)
    assert (cdrom.device, cdrom.bus, cdrom.target, cdrom.readonly) == ("cdrom", "scsi", "sda", True)
    assert cdrom.source == DiskSource(pool="default", volume="cd-install.iso")
    assert out.meta.owned_volumes == ["default/cd-install.iso"]
    xml = domain_to_xml(out)
    assert "<boot dev=" not in xml and 'model="virtio-scsi"' in xml
    assert domain_from_xml(xml).disks == out.disks


def test_one_shot_install_boot_round_trip(tmp_path: Path) -> None:
    from kvmhub.models import VMSpec

    plan = installer.Plan(kind="location", cmdline="console=ttyS0 auto=true")
    spec = installer.apply(VMSpec(name="i"), plan, "default", {"kernel": "/p/i-kernel", "initrd": "/p/i-initrd"})
    assert spec.meta.install_boot == "kernel"
    xml = installer.domain_xml(domain_to_xml(spec), plan)
    assert lifecycle.is_install_boot(xml) and lifecycle.install_boot_of(xml) == "kernel"
    assert "<on_reboot>destroy</on_reboot>" in xml
    after = lifecycle.after_install_xml(xml)
    assert not lifecycle.is_install_boot(after) and lifecycle.install_boot_of(after) is None
    assert "<kernel>" not in after and "<cmdline>" not in after and "<on_reboot>restart</on_reboot>" in after
    assert domain_from_xml(after).meta.install_boot is None
    direct = installer.Plan(kind="kernel", cmdline="console=ttyS0")
    kernel_vm = installer.apply(VMSpec(name="k"), direct, "default", {"kernel": "/p/k-kernel"})
    assert not lifecycle.is_install_boot(installer.domain_xml(domain_to_xml(kernel_vm), direct))
    assert kernel_vm.meta.install_boot is None


def test_the_installer_boot_is_kept_in_the_metadata() -> None:
    from kvmhub.models import KvmhubMeta
    from kvmhub.xml.metadata import metadata_from_xml, metadata_to_xml

    for kind in ("kernel", "cdrom"):
        meta = KvmhubMeta(image="x", install_boot=kind)
        assert "<install-boot>" + kind in metadata_to_xml(meta)
        assert metadata_from_xml(metadata_to_xml(meta)) == meta
    assert "install-boot" not in metadata_to_xml(KvmhubMeta())
    # a kind a later version may write is ignored, not an error
    assert metadata_from_xml("<vm><install-boot>floppy</install-boot></vm>").install_boot is None


def test_a_kernel_boot_kvmhub_did_not_record_is_left_alone() -> None:
    from kvmhub.models import BootSpec, VMSpec

    spec = VMSpec(name="v", boot=BootSpec(kernel="/k", initrd="/i", cmdline="console=ttyS0"))
    xml = lifecycle.install_boot_xml(domain_to_xml(spec))  # kernel + on_reboot=destroy, as virsh could make
    foreign = etree.tostring(_without_metadata(etree.fromstring(xml))).decode()
    for candidate in (xml, foreign):
        assert lifecycle.install_boot_of(candidate) is None and not lifecycle.is_install_boot(candidate)
    after = domain_from_xml(lifecycle.after_install_xml(xml))
    assert (after.boot.kernel, after.boot.initrd) == ("/k", "/i")


def _without_metadata(root: etree._Element) -> etree._Element:
    for el in root.findall("metadata"):
        root.remove(el)
    return root


def test_an_iso_install_boots_its_cdrom_first_once(tmp_path: Path) -> None:
    from kvmhub.models import DiskSource, DiskSpec, GraphicsSpec, VMSpec

    spec = VMSpec(name="cd", disks=[DiskSpec(target="vda", source=DiskSource(pool="default", volume="cd-disk0"))])
    plan = installer.Plan(kind="iso", cdrom=tmp_path / "x.iso", graphics=GraphicsSpec())
    assert plan.one_shot and plan.install_boot == "cdrom"
    out = installer.apply(spec, plan, "default", {"iso": "/p/cd-install.iso"})
    assert out.meta.install_boot == "cdrom"
    xml = installer.domain_xml(domain_to_xml(out), plan)
    assert "<on_reboot>restart</on_reboot>" in xml  # the installer's own reboot is not cut short
    assert lifecycle.install_boot_of(xml) == "cdrom" and not lifecycle.is_install_boot(xml)
    after_xml = lifecycle.after_install_xml(xml)
    after = domain_from_xml(after_xml)
    disk, cdrom = after.disks
    assert (disk.target, disk.boot_order) == ("vda", 1)
    assert (cdrom.device, cdrom.boot_order) == ("cdrom", None)
    assert cdrom.source == DiskSource(pool="default", volume="cd-install.iso")  # still attached, media in
    assert after.meta.install_boot is None and after.meta.owned_volumes == out.meta.owned_volumes
    assert lifecycle.after_install_xml(after_xml) == after_xml  # nothing left to drop


class _Volume:
    path = "/pool/v"

    def __init__(self) -> None:
        self.data = b""

    def upload(self, fh: io.BufferedReader, length: int, progress: Callable[[int], None]) -> None:
        while chunk := fh.read(1000):
            self.data += chunk
            progress(len(self.data))


class _Pool:
    name = "default"

    def __init__(self) -> None:
        self.made: dict[str, _Volume] = {}

    def create_volume(self, xml: str, what: str) -> _Volume:
        name = etree.fromstring(xml).findtext("name", "")
        self.made[name] = _Volume()
        return self.made[name]


def test_uploads_report_their_bytes(tmp_path: Path) -> None:
    from kvmhub.reporting import QUIET
    from kvmhub.undo import Undo

    (tmp_path / "k").write_bytes(KERNEL)
    (tmp_path / "i").write_bytes(b"i" * 2500)
    plan = installer.Plan(kind="kernel", kernel=tmp_path / "k", initrd=tmp_path / "i")
    seen: list[tuple[str, int, int]] = []
    pool = _Pool()
    with Undo() as undo:
        paths = installer.make_volumes(pool, "k", plan, undo, QUIET,  # type: ignore[arg-type]
                                       lambda what, done, total: seen.append((what, done, total)))
        undo.success()
    assert paths == {"kernel": "/pool/v", "initrd": "/pool/v"}
    assert pool.made["k-kernel"].data == KERNEL
    initrd = [(done, total) for what, done, total in seen if what == "upload k-initrd"]
    assert initrd[0] == (0, 2500) and initrd[-1] == (2500, 2500) and (1000, 2500) in initrd
    assert {what for what, _d, _t in seen} == {"upload k-kernel", "upload k-initrd"}
