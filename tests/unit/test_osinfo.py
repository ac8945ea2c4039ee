"""OS profiles from the installed osinfo-db: expectations are read from the db's own XML (or osinfo-query),
not guessed, so the tests follow whatever osinfo-db version the host has."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pycdlib
import pytest
from lxml import etree

from kvmhub.errors import InvalidInput
from kvmhub.models import DiskSource, DiskSpec, KvmhubMeta, NICSpec, VMSpec
from kvmhub.models.events import Event, WarningEvent
from kvmhub.reporting import Reporter
from kvmhub.services.vm import osinfo

DB = Path("/usr/share/osinfo")
pytestmark = pytest.mark.skipif(not (DB / "os").is_dir(), reason="needs the osinfo-db package (/usr/share/osinfo)")

VIRTIO_BLOCK = {"http://pcisig.com/pci/1af4/1001", "http://pcisig.com/pci/1af4/1042"}
VIRTIO_NET = {"http://pcisig.com/pci/1af4/1000", "http://pcisig.com/pci/1af4/1041"}
Q35 = "http://qemu.org/chipset/x86/q35"


def _oses() -> dict[str, etree._Element]:
    out = {}
    for path in (DB / "os").glob("*/*.xml"):
        for el in etree.parse(str(path)).getroot().findall("os"):
            out[el.get("id", "")] = el
    return out


@pytest.fixture(scope="module")
def oses() -> dict[str, etree._Element]:
    return _oses()


def _by_short_id(oses: dict[str, etree._Element], sid: str) -> etree._Element:
    return next(el for el in oses.values() if sid in [s.text for s in el.findall("short-id")])


def _chain(oses: dict[str, etree._Element], el: etree._Element) -> Iterator[etree._Element]:
    """The OS and what it derives from, transitively."""
    current: etree._Element | None = el
    while current is not None:
        yield current
        parent = current.find("derives-from")
        current = oses.get(parent.get("id", "")) if parent is not None else None


def _lists(oses: dict[str, etree._Element], sid: str, ids: set[str]) -> bool:
    return any(d.get("id") in ids and d.get("supported") != "false"
               for el in _chain(oses, _by_short_id(oses, sid)) for d in el.findall("devices/device"))


def test_debian11_gets_virtio_and_q35_as_the_db_says(oses: dict[str, etree._Element]) -> None:
    p = osinfo.resolve("debian11")
    assert (p.id, p.note, p.family, p.distro) == ("debian11", None, "linux", "debian")
    assert _lists(oses, "debian11", VIRTIO_BLOCK) and p.disk_bus == "virtio"
    assert _lists(oses, "debian11", VIRTIO_NET) and p.nic_model == "virtio"
    assert _lists(oses, "debian11", {Q35}) and p.machine == "q35"
    ram = int(_by_short_id(oses, "debian11").findtext("resources[@arch='all']/minimum/ram") or 0)
    storage = int(_by_short_id(oses, "debian11").findtext("resources[@arch='all']/minimum/storage") or 0)
    assert (p.min_memory_mib, p.min_disk_bytes) == (ram // 1024**2, storage)


@pytest.mark.parametrize("sid", ["win2k", "msdos6.22", "rhel4.0"])
def test_old_os_gets_emulated_devices(oses: dict[str, etree._Element], sid: str) -> None:
    p = osinfo.resolve(sid)
    virtio_blk = _lists(oses, sid, VIRTIO_BLOCK)
    q35 = _lists(oses, sid, {Q35})
    assert p.disk_bus == ("virtio" if virtio_blk else "sata" if q35 else "ide")
    assert p.nic_model == ("virtio" if _lists(oses, sid, VIRTIO_NET) else "e1000")
    assert p.machine == ("q35" if q35 else "pc")
    assert not virtio_blk and p.disk_bus == "ide" and p.cdrom_bus == "ide"  # what this db says about them


def test_windows10_has_no_inbox_virtio_and_gets_sata_on_q35(oses: dict[str, etree._Element]) -> None:
    p = osinfo.resolve("win10")
    assert not _lists(oses, "win10", VIRTIO_BLOCK) and _lists(oses, "win10", {Q35})
    assert (p.disk_bus, p.cdrom_bus, p.nic_model, p.machine) == ("sata", "sata", "e1000", "q35")
    assert p.min_memory_mib is not None and p.min_memory_mib >= 2048  # its x86_64 minimum, not i686's


def test_unknown_newer_release_falls_back_to_the_nearest_with_a_note() -> None:
    if "debian12" in {o.id for o in osinfo.list_os("debian")}:
        pytest.skip("this osinfo-db knows debian12; the fallback needs an unknown release")
    p = osinfo.resolve("debian12")
    known = sorted(int(o.version) for o in osinfo.list_os("debian") if o.version and o.version.isdigit())
    assert p.requested == "debian12" and p.id == f"debian{known[-1]}"
    assert p.note is not None and "debian12" in p.note and p.id in p.note
    assert p.disk_bus == "virtio"
    between = osinfo.resolve(f"debian{known[-2]}.9")  # between two known releases: the older one
    assert between.id == f"debian{known[-2]}" and between.note


def test_fallback_picks_the_release_not_newer_than_asked() -> None:
    p = osinfo.resolve("ubuntu24.04")
    versions = {o.id: o.version for o in osinfo.list_os("ubuntu")}
    assert p.id in versions and p.note
    assert tuple(int(x) for x in (versions[p.id] or "").split(".")) <= (24, 4)
    assert osinfo.resolve("fedora9999").id == max(
        (o for o in osinfo.list_os("fedora") if o.id[6:].isdigit()), key=lambda o: int(o.id[6:])).id


def test_unknown_linux_gets_the_generic_profile() -> None:
    generic = max((o.id for o in osinfo.list_os("linux20")), key=lambda s: int(s[5:]))
    for asked in ("mylinux", "generic"):
        p = osinfo.resolve(asked)
        assert p.id == generic and p.note and "generic" in p.note


def test_garbage_is_refused_with_near_matches() -> None:
    with pytest.raises(InvalidInput) as exc:
        osinfo.resolve("debain11")
    assert "debian11" in (exc.value.cause or "") and "kvmhub os ls" in (exc.value.hint or "")
    with pytest.raises(InvalidInput):
        osinfo.resolve("zzqx")
    with pytest.raises(InvalidInput):
        osinfo.resolve("  ")


def test_aliases_resolve_to_the_same_os() -> None:
    assert osinfo.resolve("debianbullseye").name == osinfo.resolve("debian11").name
    assert osinfo.resolve("DEBIAN11").id == "debian11"


def test_ls_filter_matches_osinfo_query() -> None:
    found = osinfo.list_os("debian")
    assert found and all("debian" in (o.id + o.name + (o.distro or "")).lower() for o in found)
    assert len(osinfo.list_os()) > len(found)
    if shutil.which("osinfo-query") is None:
        pytest.skip("osinfo-query (package libosinfo-bin) is not installed")
    out = subprocess.run(["osinfo-query", "os", "--fields=short-id,eol-date", "distro=debian"],
                         capture_output=True, text=True, check=True).stdout
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines()[2:] if "|" in line]
    by_id = {o.id: o for o in found}
    for sid, eol in rows:
        assert sid in by_id and (by_id[sid].eol or "") == eol


def test_index_is_cached_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osinfo, "CACHE_DIRS", (tmp_path,))
    monkeypatch.setattr(osinfo, "_LOADED", {})
    first = osinfo.list_os("win")
    assert (tmp_path / "osinfo-index.json").stat().st_size > 0
    monkeypatch.setattr(osinfo, "_LOADED", {})
    monkeypatch.setattr(osinfo, "_build_index", lambda *a: pytest.fail("parsed again despite the cache"))
    assert osinfo.list_os("win") == first


def _iso(path: Path, volume: str, publisher: str = "") -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=volume, pub_ident_str=publisher)
    iso.add_fp(io.BytesIO(b"x"), 1, "/README.;1")
    iso.write(str(path))
    iso.close()
    return path


def test_detect_iso_by_volume_id(tmp_path: Path, oses: dict[str, etree._Element]) -> None:
    pattern = _by_short_id(oses, "debian11").findtext("media[@arch='x86_64']/iso/volume-id")
    assert pattern == r"Debian 11.\d+.\d+ amd64 n"  # the db's pattern this ISO is built to match
    p = osinfo.detect_iso(_iso(tmp_path / "d.iso", "Debian 11.6.0 amd64 n"))
    assert p is not None and p.id == "debian11" and p.disk_bus == "virtio" and p.note
    assert osinfo.detect_iso(_iso(tmp_path / "none.iso", "MY HOME VIDEOS")) is None


def test_detect_iso_needs_every_id_the_db_names(tmp_path: Path) -> None:
    # Windows media name both a volume id and a publisher
    assert osinfo.detect_iso(_iso(tmp_path / "w.iso", "CCCOMA_X64FRE_EN-US_DV9")) is None
    p = osinfo.detect_iso(_iso(tmp_path / "w2.iso", "CCCOMA_X64FRE_EN-US_DV9", "MICROSOFT CORPORATION"))
    assert p is not None and p.family == "winnt" and p.disk_bus == "sata"


def test_detect_refuses_a_file_that_is_not_an_iso(tmp_path: Path) -> None:
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"\0" * 70000)
    with pytest.raises(InvalidInput, match="not an ISO 9660"):
        osinfo.detect_iso(junk)
    with pytest.raises(InvalidInput):
        osinfo.detect_iso(tmp_path / "missing.iso")


def _spec() -> VMSpec:
    return VMSpec(
        name="v",
        disks=[DiskSpec(target="vda", source=DiskSource(pool="default", volume="v-disk0.qcow2")),
               DiskSpec(target="vdb", format="raw", readonly=True, source=DiskSource(pool="default", volume="s"))],
        nics=[NICSpec(network="lab")],
        meta=KvmhubMeta(image="tiny"),
    )


def test_apply_profile_moves_disks_to_the_os_bus() -> None:
    spec = osinfo.apply_profile(_spec(), osinfo.resolve("win2k"))
    assert [(d.target, d.bus, d.device) for d in spec.disks] == [("hda", "ide", "disk"), ("hdb", "ide", "cdrom")]
    assert spec.nics[0].model == "e1000" and spec.machine == "pc" and spec.meta.os == "win2k"
    spec = osinfo.apply_profile(_spec(), osinfo.resolve("win10"))
    assert [(d.target, d.bus) for d in spec.disks] == [("sda", "sata"), ("sdb", "sata")]
    assert spec.machine == "q35"
    spec = osinfo.apply_profile(_spec(), osinfo.resolve("debian12"))
    assert [(d.target, d.bus, d.device) for d in spec.disks] == [("vda", "virtio", "disk"), ("vdb", "virtio", "disk")]
    assert spec.machine == "q35" and spec.meta.os == "debian11"


def test_check_sizes_warns_on_memory_refuses_small_disk() -> None:
    said: list[Event] = []
    p = osinfo.resolve("debian11")
    assert p.min_memory_mib and p.min_disk_bytes
    osinfo.check_sizes(p, p.min_memory_mib - 1, None, Reporter(said.append))
    assert said and isinstance(said[0], WarningEvent) and str(p.min_memory_mib) in said[0].message
    with pytest.raises(InvalidInput, match="minimum storage"):
        osinfo.check_sizes(p, p.min_memory_mib, p.min_disk_bytes - 1, Reporter(said.append))
    osinfo.check_sizes(p, p.min_memory_mib, p.min_disk_bytes, Reporter(said.append))
    assert len(said) == 1
