"""Operating systems from libosinfo's database (osinfo-db): listing, resolving a variant to the devices and
sizes it needs (with a fallback for variants newer than the installed db), and recognising installer ISOs.

The db's XML is read with lxml, never executed; the parsed index is cached as JSON keyed by the db's
VERSION and file times, so listing stays instant.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import pycdlib
from lxml import etree
from pycdlib.pycdlibexception import PyCdlibException
from pydantic import BaseModel, ValidationError

from kvmhub.errors import HostProblem, InvalidInput
from kvmhub.models import DiskSpec, NICSpec, VMSpec
from kvmhub.models.osinfo import OSInfo, OSProfile
from kvmhub.reporting import Reporter
from kvmhub.validate import format_size

DB_DIR_ENV = "OSINFO_SYSTEM_DIR"  # libosinfo's own override of the system db location
DEFAULT_DB_DIR = Path("/usr/share/osinfo")
CACHE_DIRS = (Path("/var/cache/kvmhub"), Path.home() / ".cache" / "kvmhub")
_CACHE_FORMAT = 1
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ISO_FIELDS = ("volume-id", "system-id", "publisher-id", "application-id")
# The architectures an x86_64 VM can run, best first; resources and media of other arches are ignored.
_ARCH_RANK = {"x86_64": 0, "all": 1, "i686": 2}
_RES_FIELDS = ("min_ram", "min_storage", "rec_ram", "rec_storage")
_GENERIC_PREFIX = "linux"  # osinfo-db's own generic entries: linux2016 ... linux2022

# Device names as osinfo-db's device/ files spell them.
_VIRTIO_BLOCK = frozenset({"virtio-block", "virtio1.0-block"})
_VIRTIO_NET = frozenset({"virtio-net", "virtio1.0-net"})
_VIRTIO_SCSI = frozenset({"virtio-scsi", "virtio1.0-scsi"})
_Q35 = "qemu-x86-q35"


class _Resources(BaseModel):
    min_ram: int | None = None
    min_storage: int | None = None
    rec_ram: int | None = None
    rec_storage: int | None = None


class _Entry(BaseModel):
    uri: str
    short_ids: list[str]
    name: str
    family: str | None = None
    distro: str | None = None
    version: str | None = None
    vendor: str | None = None
    release_date: str | None = None
    eol: str | None = None
    derives_from: list[str] = []
    clones: list[str] = []
    upgrades: list[str] = []
    devices: dict[str, bool] = {}  # device name -> supported (False removes what a parent supports)
    resources: dict[str, _Resources] = {}  # by arch
    isos: list[dict[str, str]] = []  # media arch and its <iso> patterns


class _Index(BaseModel):
    key: str
    format: int = _CACHE_FORMAT
    entries: list[_Entry]


class _Db:
    """The parsed index with lookups by short id and URI."""

    def __init__(self, index: _Index) -> None:
        self.entries = index.entries
        self.by_uri = {e.uri: e for e in index.entries}
        self.by_short_id = {sid: e for e in index.entries for sid in e.short_ids}


# ---------------------------------------------------------------------------------------------- reading


def db_dir() -> Path:
    """Where osinfo-db lives: $OSINFO_SYSTEM_DIR, else /usr/share/osinfo."""
    return Path(os.environ.get(DB_DIR_ENV) or DEFAULT_DB_DIR)


def _os_files(root: Path) -> list[Path]:
    # *.d directories beside an OS file hold drivers to install separately, not in-box support
    return sorted(p for p in (root / "os").glob("*/*.xml") if p.is_file())


def _device_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "device").rglob("*.xml") if p.is_file())


def _db_key(root: Path, files: list[Path]) -> str:
    try:
        version = (root / "VERSION").read_text().strip()
    except OSError:
        version = "unknown"
    newest = max((p.stat().st_mtime_ns for p in files), default=0)
    return f"{root}|{version}|{len(files)}|{newest}"


def _parse_file(path: Path) -> etree._Element | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    try:
        return etree.parse(str(path), parser).getroot()
    except (etree.XMLSyntaxError, OSError):
        return None  # one broken file must not hide the rest of the db


def _text(el: etree._Element, tag: str) -> str | None:
    for child in el.findall(tag):
        if child.get(_XML_LANG) is None and child.text and child.text.strip():
            return child.text.strip()
    return None


def _int(el: etree._Element | None, tag: str) -> int | None:
    if el is None:
        return None
    text = _text(el, tag)
    return int(text) if text is not None and text.isdigit() else None


def _parse_os(el: etree._Element, device_names: dict[str, str]) -> _Entry | None:
    short_ids = [s.text.strip().lower() for s in el.findall("short-id") if s.text and s.text.strip()]
    uri = el.get("id")
    if not short_ids or not uri:
        return None
    resources: dict[str, _Resources] = {}
    for res in el.findall("resources"):
        arch = res.get("arch", "all")
        mini, rec = res.find("minimum"), res.find("recommended")
        # <resources inherit="true"/> carries no figures: the lineage walk then takes the parent's
        resources[arch] = _Resources(
            min_ram=_int(mini, "ram"),
            min_storage=_int(mini, "storage"),
            rec_ram=_int(rec, "ram"),
            rec_storage=_int(rec, "storage"),
        )
    devices: dict[str, bool] = {}
    for dev in el.findall("devices/device"):
        dev_id = dev.get("id", "")
        devices[device_names.get(dev_id, dev_id)] = dev.get("supported", "true") != "false"
    isos = []
    for media in el.findall("media"):
        iso = media.find("iso")
        if iso is None:
            continue
        patterns = {f: t for f in _ISO_FIELDS if (t := _text(iso, f)) is not None}
        if patterns:
            isos.append({"arch": media.get("arch", "all"), **patterns})
    return _Entry(
        uri=uri,
        short_ids=short_ids,
        name=_text(el, "name") or short_ids[0],
        family=_text(el, "family"),
        distro=_text(el, "distro"),
        version=_text(el, "version"),
        vendor=_text(el, "vendor"),
        release_date=_text(el, "release-date"),
        eol=_text(el, "eol-date"),
        derives_from=[r.get("id", "") for r in el.findall("derives-from")],
        clones=[r.get("id", "") for r in el.findall("clones")],
        upgrades=[r.get("id", "") for r in el.findall("upgrades")],
        devices=devices,
        resources=resources,
        isos=isos,
    )


def _build_index(root: Path, files: list[Path], key: str) -> _Index:
    device_names: dict[str, str] = {}
    for path in _device_files(root):
        doc = _parse_file(path)
        for dev in doc.findall("device") if doc is not None else []:
            name = _text(dev, "name")
            if dev.get("id") and name:
                device_names[dev.get("id", "")] = name
    entries = []
    for path in files:
        doc = _parse_file(path)
        for el in doc.findall("os") if doc is not None else []:
            entry = _parse_os(el, device_names)
            if entry is not None:
                entries.append(entry)
    return _Index(key=key, entries=entries)


def _cache_file(cache_dir: Path) -> Path:
    return cache_dir / "osinfo-index.json"


def _load_cached(key: str) -> _Index | None:
    for cache_dir in CACHE_DIRS:
        try:
            index = _Index.model_validate_json(_cache_file(cache_dir).read_bytes())
        except (OSError, ValidationError, ValueError):
            continue
        if index.key == key and index.format == _CACHE_FORMAT:
            return index
    return None


def _store_cached(index: _Index) -> None:
    data = index.model_dump_json().encode()
    for cache_dir in CACHE_DIRS:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".osinfo-index-")
        except OSError:
            continue  # a read-only or foreign cache dir: parse again next time
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)  # public data: every user may read it
            os.replace(tmp, _cache_file(cache_dir))
            return
        except OSError:
            Path(tmp).unlink(missing_ok=True)


_LOADED: dict[str, _Db] = {}


def _db() -> _Db:
    """The osinfo-db index: from memory, the JSON cache, or parsed afresh (then cached)."""
    root = db_dir()
    files = _os_files(root)
    if not files:
        raise HostProblem(
            f"no osinfo-db found under {root}",
            cause="the libosinfo OS database is not installed",
            hint="install it: `apt-get install osinfo-db` (or set $OSINFO_SYSTEM_DIR)",
        )
    key = _db_key(root, [*files, *_device_files(root)])
    if key not in _LOADED:
        index = _load_cached(key)
        if index is None:
            index = _build_index(root, files, key)
            _store_cached(index)
        _LOADED.clear()
        _LOADED[key] = _Db(index)
    return _LOADED[key]


# ---------------------------------------------------------------------------------------------- listing


def _version_key(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text or ""))


def _info(entry: _Entry) -> OSInfo:
    return OSInfo(
        id=entry.short_ids[0],
        name=entry.name,
        family=entry.family,
        distro=entry.distro,
        version=entry.version,
        vendor=entry.vendor,
        release_date=entry.release_date,
        eol=entry.eol,
        aliases=entry.short_ids[1:],
    )


def list_os(filter: str | None = None) -> list[OSInfo]:
    """Every OS in osinfo-db, or those whose short ids, name, distro, family or vendor contain ``filter``
    (case-insensitive); sorted by distro, then version."""
    needle = (filter or "").strip().lower()
    found = []
    for entry in _db().entries:
        hay = [*entry.short_ids, entry.name, entry.distro or "", entry.family or "", entry.vendor or ""]
        if not needle or any(needle in h.lower() for h in hay):
            found.append(entry)
    found.sort(key=lambda e: (e.distro or e.family or "", not _version_key(e.version), _version_key(e.version),
                              e.short_ids[0]))
    return [_info(e) for e in found]


# ---------------------------------------------------------------------------------------------- profiles


def _lineage(db: _Db, entry: _Entry, links: Iterable[str]) -> Iterator[_Entry]:
    """``entry`` and its ancestors along the given relations, nearest first."""
    seen: set[str] = set()
    queue = [entry]
    while queue:
        current = queue.pop(0)
        if current.uri in seen:
            continue
        seen.add(current.uri)
        yield current
        for link in links:
            queue.extend(db.by_uri[u] for u in getattr(current, link) if u in db.by_uri)


def _devices(db: _Db, entry: _Entry) -> set[str]:
    """Device names the OS has drivers for, inherited like libosinfo does (derives-from, clones)."""
    verdict: dict[str, bool] = {}
    for ancestor in _lineage(db, entry, ("derives_from", "clones")):
        for name, supported in ancestor.devices.items():
            verdict.setdefault(name, supported)  # the nearest statement wins
    return {name for name, ok in verdict.items() if ok}


def _resources(db: _Db, entry: _Entry) -> _Resources:
    """Minimum and recommended RAM/storage for an x86_64 VM, from the nearest OS in the lineage that states
    any (its x86_64 figures, else "all", else i686); a recommendation below the minimum is raised to it."""
    for ancestor in _lineage(db, entry, ("derives_from", "clones", "upgrades")):
        out = _Resources()
        for arch in sorted((a for a in ancestor.resources if a in _ARCH_RANK), key=_ARCH_RANK.__getitem__):
            for field in _RES_FIELDS:
                if getattr(out, field) is None:
                    setattr(out, field, getattr(ancestor.resources[arch], field))
        if any(getattr(out, f) is not None for f in _RES_FIELDS):
            if out.min_ram and out.rec_ram and out.rec_ram < out.min_ram:
                out.rec_ram = out.min_ram
            if out.min_storage and out.rec_storage and out.rec_storage < out.min_storage:
                out.rec_storage = out.min_storage
            return out
    return _Resources()


def _profile(db: _Db, requested: str, used: str, entry: _Entry, note: str | None) -> OSProfile:
    devs = _devices(db, entry)
    # q35 when the db names the chipset, or the OS has PCIe-native (virtio 1.0) drivers
    q35 = _Q35 in devs or any(d.startswith("virtio1.0-") for d in devs)
    disk_bus: Literal["virtio", "sata", "ide"] = "virtio" if devs & _VIRTIO_BLOCK else ("sata" if q35 else "ide")
    cdrom_bus: Literal["scsi", "sata", "ide"] = "scsi" if devs & _VIRTIO_SCSI else ("sata" if q35 else "ide")
    nic: Literal["virtio", "e1000", "rtl8139"] = "virtio" if devs & _VIRTIO_NET else "e1000"
    if nic == "e1000" and "rtl8139" in devs and not devs & {"e1000", "e1000e"}:
        nic = "rtl8139"
    res = _resources(db, entry)
    return OSProfile(
        requested=requested,
        id=used,
        name=entry.name,
        family=entry.family or "unknown",
        distro=entry.distro,
        version=entry.version,
        disk_bus=disk_bus,
        cdrom_bus=cdrom_bus,
        nic_model=nic,
        machine="q35" if q35 else "pc",
        min_memory_mib=res.min_ram // 1024**2 if res.min_ram else None,
        recommended_memory_mib=res.rec_ram // 1024**2 if res.rec_ram else None,
        min_disk_bytes=res.min_storage,
        recommended_disk_bytes=res.rec_storage,
        note=note,
    )


_RELEASE = re.compile(r"([a-z][a-z-]*?)-?(\d+(?:\.\d+)*)")


def _releases(db: _Db) -> dict[str, list[tuple[tuple[int, ...], str]]]:
    """Numbered short ids grouped by their name part: {"debian": [((11,), "debian11"), ...], ...}."""
    groups: dict[str, list[tuple[tuple[int, ...], str]]] = {}
    for sid in db.by_short_id:
        m = _RELEASE.fullmatch(sid)
        if m:
            groups.setdefault(m.group(1), []).append((_version_key(m.group(2)), sid))
    for members in groups.values():
        members.sort()
    return groups


def _nearest(members: list[tuple[tuple[int, ...], str]], version: tuple[int, ...]) -> str:
    older = [m for m in members if m[0] <= version]
    return older[-1][1] if older else members[0][1]


def _fallback(db: _Db, text: str) -> tuple[str, str] | None:
    """(short id to use, why) for a variant the db does not know, or None when it names nothing known."""
    groups = _releases(db)
    version = db_version()
    m = _RELEASE.fullmatch(text)
    if m and m.group(1) in groups:
        used = _nearest(groups[m.group(1)], _version_key(m.group(2)))
        what = "generic Linux profile" if m.group(1) == _GENERIC_PREFIX else f"{m.group(1)} release"
        return used, f"{text} is not in this host's osinfo-db ({version}); using {used}, the nearest {what} it knows"
    name = m.group(1) if m else text
    if name in db.by_short_id:  # e.g. archlinux5 -> archlinux (a rolling release without numbers)
        return name, f"{text} is not in this host's osinfo-db ({version}); using {name}"
    for prefix in sorted(groups, key=len, reverse=True):
        if text.startswith(prefix) and len(prefix) >= 3:
            used = groups[prefix][-1][1]
            return used, (
                f"{text} is not in this host's osinfo-db ({version}); using {used}, "
                f"the newest {prefix} release it knows"
            )
    if (text == "generic" or "linux" in text) and _GENERIC_PREFIX in groups:
        generic = groups[_GENERIC_PREFIX][-1][1]
        return generic, (
            f"{text} is not in this host's osinfo-db ({version}); using the generic Linux profile {generic}"
        )
    return None


def db_version() -> str:
    """The installed osinfo-db's VERSION (a date such as 20221203), or "unknown"."""
    try:
        return (db_dir() / "VERSION").read_text().strip()
    except OSError:
        return "unknown"


def resolve(variant: str) -> OSProfile:
    """The device profile for an OS variant (a libosinfo short id such as debian11 or win10).

    A variant the db does not know but that names a known distro gets that distro's nearest known release
    (debian12 -> debian11), an unknown Linux gets osinfo-db's generic Linux profile; ``note`` says so.
    Raises InvalidInput, listing near matches, for anything else.
    """
    text = variant.strip().lower()
    if not text:
        raise InvalidInput("the OS variant is empty", hint="list them: {cmd:os ls}")
    db = _db()
    entry = db.by_short_id.get(text)
    if entry is not None:
        return _profile(db, variant, text, entry, None)
    found = _fallback(db, text)
    if found is not None:
        used, why = found
        return _profile(db, variant, used, db.by_short_id[used], why)
    near = difflib.get_close_matches(text, list(db.by_short_id), n=5, cutoff=0.6)
    raise InvalidInput(
        f"unknown OS variant {variant!r}",
        cause=f"osinfo-db ({db_version()}) has no such OS" + (f"; close: {', '.join(near)}" if near else ""),
        hint="list the known ones: {cmd:os ls [FILTER]}",
    )


# ---------------------------------------------------------------------------------------------- ISO detection


def _iso_ids(path: Path) -> dict[str, str]:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (PyCdlibException, OSError) as exc:
        raise InvalidInput(f"{path} is not an ISO 9660 image", cause=str(exc)) from None
    try:
        pvd = iso.pvd

        def clean(raw: bytes) -> str:
            return raw.decode("utf-8", errors="replace").strip(" \x00")

        return {
            "volume-id": clean(pvd.volume_identifier),
            "system-id": clean(pvd.system_identifier),
            "publisher-id": clean(pvd.publisher_identifier.text),
            "application-id": clean(pvd.application_identifier.text),
        }
    finally:
        iso.close()


def _media_matches(media: dict[str, str], ids: dict[str, str]) -> bool:
    for field in _ISO_FIELDS:
        pattern = media.get(field)
        if pattern is None:
            continue
        try:
            if not ids[field] or re.search(pattern, ids[field]) is None:
                return False
        except re.error:
            return False
    return True


def detect_iso(path: Path) -> OSProfile | None:
    """The profile of the OS whose installer ``path`` is, matched on the ISO's volume, system, publisher and
    application ids against osinfo-db's media patterns (x86_64 media preferred); None when nothing matches.
    Raises InvalidInput when the file is missing or not an ISO 9660 image."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a readable file")
    ids = _iso_ids(path)
    db = _db()
    best: tuple[tuple[int, int, int], _Entry] | None = None
    for entry in db.entries:
        for media in entry.isos:
            rank = _ARCH_RANK.get(media["arch"])
            if rank is None or not _media_matches(media, ids):
                continue
            # x86_64 first, then the media that pins the most ids, then the newest OS (Windows 11 kept 10's ids)
            released = int(re.sub(r"\D", "", entry.release_date or "") or 0)
            score = (rank, -sum(f in media for f in _ISO_FIELDS), -released)
            if best is None or score < best[0]:
                best = (score, entry)
    if best is None:
        return None
    entry = best[1]
    note = f"detected from the ISO's volume id {ids['volume-id']!r}" if ids["volume-id"] else "detected"
    return _profile(db, entry.short_ids[0], entry.short_ids[0], entry, note)


# ---------------------------------------------------------------------------------------------- create


_TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd"}


def _target(prefix: str, used: set[str]) -> str:
    for i in range(26):
        name = prefix + chr(ord("a") + i)
        if name not in used:
            used.add(name)
            return name
    raise InvalidInput("too many disks on one bus", hint="remove some disks")


def apply_profile(spec: VMSpec, profile: OSProfile) -> VMSpec:
    """``spec`` with the profile's machine type, NIC model and buses: virtio disks move to the profile's
    disk bus (targets renamed to match: vdX -> sdX/hdX); read-only ones (the seed) become CD-ROMs there,
    since SATA and IDE disks cannot be read-only. Records the OS in the metadata."""
    used = {d.target for d in spec.disks if d.bus != "virtio"}
    disks: list[DiskSpec] = []
    for disk in spec.disks:
        if disk.bus != "virtio" or profile.disk_bus == "virtio":
            disks.append(disk)
            continue
        bus = profile.disk_bus
        device = "cdrom" if disk.readonly and bus in ("sata", "ide") else disk.device
        disks.append(disk.model_copy(update={"bus": bus, "device": device,
                                             "target": _target(_TARGET_PREFIX[bus], used)}))
    nics: list[NICSpec] = [
        n.model_copy(update={"model": profile.nic_model}) if n.model == "virtio" else n for n in spec.nics
    ]
    meta = spec.meta.model_copy(update={"os": profile.id})
    return spec.model_copy(update={"machine": profile.machine, "disks": disks, "nics": nics, "meta": meta})


def check_sizes(profile: OSProfile, memory_mib: int, disk_bytes: int | None, report: Reporter) -> None:
    """Warn when memory is below the OS minimum; refuse an explicit disk size below its minimum storage."""
    if profile.min_memory_mib is not None and memory_mib < profile.min_memory_mib:
        report.warn(f"{memory_mib} MiB of memory is below {profile.name}'s minimum of "
            f"{profile.min_memory_mib} MiB; its installer or services may fail")
    if disk_bytes is not None and profile.min_disk_bytes is not None and disk_bytes < profile.min_disk_bytes:
        raise InvalidInput(
            f"{{opt:disk}} {format_size(disk_bytes)} is below {profile.name}'s minimum storage",
            cause=f"osinfo-db says {profile.id} needs at least {format_size(profile.min_disk_bytes)}",
            hint=f"pass {{opt:disk}} {format_size(profile.recommended_disk_bytes or profile.min_disk_bytes)}",
        )


def for_create(
    variant: str | None,
    image: str | None,
    image_os: str | None,
    memory_mib: int,
    disk_bytes: int | None,
    report: Reporter,
) -> OSProfile | None:
    """The profile a new VM gets: from --os, else from ``image_os`` (the OS recorded on image ``image``), else none.

    Prints the fallback note and size warnings through ``say``; raises InvalidInput for an unknown --os or
    an explicit --disk below the OS's minimum storage. An image's recorded OS the db does not know only warns.
    """
    if variant is not None:
        profile = resolve(variant)
    else:
        if not image_os:
            return None
        try:
            profile = resolve(image_os)
        except InvalidInput as exc:
            report.warn(f"image {image} records OS {image_os!r}, which osinfo-db does not know ({exc.cause}); "
                "using virtio devices")
            return None
    if profile.note:
        report.warn(f"{profile.note}")
    check_sizes(profile, memory_mib, disk_bytes, report)
    return profile


__all__ = ["apply_profile", "check_sizes", "db_version", "detect_iso", "for_create", "list_os", "resolve"]
