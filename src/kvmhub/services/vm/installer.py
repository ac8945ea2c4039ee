"""Installer and kernel-boot VMs: create's ``--iso``, ``--location`` (with ``--kickstart``/``--preseed``)
and ``--kernel`` options turned into uploaded volumes, a CD-ROM, a VNC display and the boot configuration.

Every file the VM needs is uploaded into the disks pool as a volume the VM owns (``NAME-install.iso``,
``NAME-kernel``, ``NAME-initrd``), so the same request works against a remote host. An unattended
install boots the installer kernel once, an ``--iso`` install its CD-ROM first once; later starts boot
the disk (see :mod:`kvmhub.xml.lifecycle`).
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kvmhub import faults
from kvmhub.errors import InvalidInput
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import storage as hv_storage
from kvmhub.models import BootSpec, DiskSource, DiskSpec, GraphicsSpec, VMSpec
from kvmhub.models.documents import HostMedia
from kvmhub.models.requests_vm import CreateRequest
from kvmhub.ops.actions import Action, StepLog
from kvmhub.reporting import BytesFn, Reporter
from kvmhub.services.storage.media import media_path
from kvmhub.services.vm import osinfo
from kvmhub.tools import installer as media_tool
from kvmhub.tools.installer import read_answer_document as read_answer_document  # the CLI reads answer files with it
from kvmhub.validate import format_size
from kvmhub.xml import lifecycle
from kvmhub.xml import volume as xml_volume
from kvmhub.xml.domain import domain_from_xml

if TYPE_CHECKING:
    from kvmhub.models.osinfo import OSProfile



DEFAULT_DISK = 10 * 1024**3
VNC_PORTS = (5900, 65535)
DEFAULT_CDROM_BUS: Literal["scsi"] = "scsi"  # virtio-scsi: in every distribution kernel, unlike AHCI
_TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd"}


def iso_volume(name: str) -> str:
    return f"{name}-install.iso"


def kernel_volume(name: str) -> str:
    return f"{name}-kernel"


def initrd_volume(name: str) -> str:
    return f"{name}-initrd"


@dataclass
class Plan:
    """What an installer or kernel-boot request needs, checked before anything is made."""

    kind: Literal["iso", "location", "kernel"] | None = None
    cdrom: Path | None = None  # the ISO uploaded and attached as CD-ROM
    location: Path | None = None
    boot_files: media_tool.BootFiles | None = None
    answer: media_tool.AnswerFile | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str | None = None
    graphics: GraphicsSpec | None = None
    detected_os: str | None = None  # the OS the ISO's ids match in osinfo-db (when no --os was given)
    profile: OSProfile | None = None  # the OS profile the VM gets (set by create, picks the CD-ROM bus)
    notes: list[str] = field(default_factory=list)

    @property
    def install_boot(self) -> lifecycle.InstallBoot | None:
        """The boot of the first start only: the installer kernel, or the CD-ROM first."""
        return "kernel" if self.kind == "location" else "cdrom" if self.kind == "iso" else None

    @property
    def one_shot(self) -> bool:
        """The installer boots once; later starts boot the disk."""
        return self.install_boot is not None

    @property
    def cdrom_bus(self) -> Literal["scsi", "sata", "ide"]:
        return self.profile.cdrom_bus if self.profile is not None else DEFAULT_CDROM_BUS

    def volumes(self, name: str) -> list[str]:
        """The volumes this plan uploads into the disks pool."""
        vols = [iso_volume(name)] if self.cdrom is not None else []
        if self.kind in ("location", "kernel"):
            vols.append(kernel_volume(name))
        if self.kind == "location" or self.initrd is not None:
            vols.append(initrd_volume(name))
        return vols


def wanted(req: CreateRequest) -> bool:
    """Whether ``req`` asks for an installer or kernel-boot VM."""
    return req.iso is not None or req.location is not None or req.kernel is not None


def volume_names(req: CreateRequest) -> list[str]:
    """Every volume an installer or kernel-boot request may upload (to refuse leftovers up front)."""
    vols = [iso_volume(req.name)] if req.iso is not None or req.location is not None else []
    if req.location is not None or req.kernel is not None:
        vols += [kernel_volume(req.name), initrd_volume(req.name)]
    return vols


# --------------------------------------------------------------------------- checking the request


def _readable_file(hv: Hypervisor, media: HostMedia, option: str) -> Path:
    path = media_path(hv, media, option)
    if not path.is_file():
        raise InvalidInput(f"{option} {media} is not a file", hint="give the path of an existing file")
    if not os.access(path, os.R_OK):
        raise InvalidInput(f"{option} {media} is not readable", cause="permission denied")
    return path


def _refuse_together(req: CreateRequest) -> None:
    chosen = [opt for opt, val in (("{opt:iso}", req.iso), ("{opt:location}", req.location),
                                   ("{opt:kernel}", req.kernel)) if val is not None]
    if len(chosen) > 1:
        raise InvalidInput(f"{' and '.join(chosen)} cannot be combined",
                           hint="{opt:iso} boots a CD-ROM, {opt:location} an installer's kernel, "
                           "{opt:kernel} your own kernel")
    if chosen and chosen[0] in ("{opt:iso}", "{opt:location}") and req.image is not None:
        raise InvalidInput(f"{chosen[0]} installs onto an empty disk; {{opt:image}} cannot be used with it",
                           hint="drop {opt:image} (size the disk with {opt:disk})")
    if req.kickstart is not None and req.preseed is not None:
        raise InvalidInput("{opt:kickstart} and {opt:preseed} cannot be combined",
                           hint="give the one your installer reads")
    if (req.kickstart is not None or req.preseed is not None) and req.location is None:
        raise InvalidInput("{opt:kickstart}/{opt:preseed} need {opt:location}",
                           hint="{opt:location} ISO_OR_TREE: the installer whose initrd gets the file")
    if req.extra_args is not None and req.location is None:
        raise InvalidInput("{opt:extra_args} needs {opt:location}", hint="with {opt:kernel}, give {opt:cmdline}")
    if (req.initrd is not None or req.cmdline is not None) and req.kernel is None:
        raise InvalidInput("{opt:initrd}/{opt:cmdline} need {opt:kernel}", hint="add {opt:kernel} FILE")


def _graphics(req: CreateRequest) -> tuple[GraphicsSpec | None, list[str]]:
    wanted = req.vnc if req.vnc is not None else (req.iso is not None or req.location is not None)
    if not wanted:
        if req.vnc_port is not None or req.vnc_listen != "127.0.0.1":
            raise InvalidInput("{opt:vnc_port}/{opt:vnc_listen} need a VNC display", hint="add {opt:vnc}")
        return None, []
    low, high = VNC_PORTS
    if req.vnc_port is not None and not low <= req.vnc_port <= high:
        raise InvalidInput(f"{{opt:vnc_port}} {req.vnc_port} is out of range",
                           hint=f"{low} to {high}, or leave it out for the next free port")
    try:
        listen = ipaddress.ip_address(req.vnc_listen)
    except ValueError:
        raise InvalidInput(f"{{opt:vnc_listen}} {req.vnc_listen!r} is not an IP address",
                           hint="127.0.0.1 (this host only), or an address of the host such as 0.0.0.0") from None
    notes = []
    if not listen.is_loopback:
        notes.append(f"warning: VNC listens on {listen} without a password; anyone reaching that address and "
                     "port sees the console (keep the default 127.0.0.1 and tunnel over SSH)")
    port = req.vnc_port if req.vnc_port is not None else -1
    return GraphicsSpec(listen=str(listen), port=port), notes


def _detect_os(iso: Path) -> tuple[str | None, list[str]]:
    found = osinfo.detect_iso(iso)
    if found is None:
        return None, [f"OS of {iso.name} not recognised: CD-ROM on virtio-scsi, virtio devices (--os picks others)"]
    return found.id, [f"OS {found.id} ({found.name}) {found.note or 'detected'}"]


def check(hv: Hypervisor, req: CreateRequest) -> Plan:
    """Check the installer and kernel-boot options of ``req`` (files, combinations, media layout, VNC).

    Reads the media on the kvmhub host (``hv`` finds those given as volumes) but changes nothing.
    Raises InvalidInput, or NotFound for a missing volume.
    """
    _refuse_together(req)
    plan = Plan()
    plan.graphics, plan.notes = _graphics(req)
    if req.iso is not None:
        plan.kind = "iso"
        plan.cdrom = _readable_file(hv, req.iso, "--iso")
        media_tool.open_media(plan.cdrom).close()  # refuses a file that is no ISO 9660 image
    elif req.location is not None:
        plan.kind = "location"
        location = media_path(hv, req.location, "--location")
        plan.location = location
        kind: media_tool.AnswerKind | None = "kickstart" if req.kickstart else "preseed" if req.preseed else None
        answer_doc = req.kickstart or req.preseed
        if kind is not None and answer_doc is not None:
            plan.answer = media_tool.answer_file(answer_doc, kind)
        with media_tool.open_media(location) as media:
            plan.boot_files = media_tool.find_boot_files(media)
            if media.is_iso:
                plan.cdrom = _readable_file(hv, req.location, "--location")
        media_tool.check_answer(plan.boot_files.layout.family, plan.answer, location)
        if req.extra_args is not None:
            media_tool.check_cmdline(req.extra_args, "--extra-args")
        plan.cmdline = media_tool.installer_cmdline(plan.boot_files, plan.answer, req.extra_args)
        if plan.cdrom is None and not (req.extra_args and "repo=" in req.extra_args):
            plan.notes.append("warning: installing from a directory tree: the installer finds no CD-ROM; point "
                              "it at a network copy of the tree with --extra-args (e.g. inst.repo=URL)")
    elif req.kernel is not None:
        plan.kind = "kernel"
        plan.kernel = _readable_file(hv, req.kernel, "{opt:kernel}")
        plan.initrd = _readable_file(hv, req.initrd, "--initrd") if req.initrd is not None else None
        plan.cmdline = media_tool.check_cmdline(req.cmdline, "--cmdline") if req.cmdline is not None else None
    if req.os is None and plan.cdrom is not None:
        plan.detected_os, notes = _detect_os(plan.cdrom)
        plan.notes += notes
    return plan


def disk_size(profile: OSProfile | None, requested: int | None) -> int:
    """An empty disk's size: --disk, else the OS's recommended storage, else 10 GiB."""
    if requested is not None:
        return requested
    if profile is not None and profile.recommended_disk_bytes:
        return profile.recommended_disk_bytes
    return DEFAULT_DISK


# --------------------------------------------------------------------------- making the volumes


def _delete_if_present(pool: hv_storage.Pool, vol: str) -> None:
    if pool.has_volume(vol):
        pool.volume(vol).delete()


def _upload(pool: hv_storage.Pool, vol_name: str, src: Path, undo: StepLog, report: Reporter,
            progress: BytesFn) -> str:
    """Upload ``src`` as the raw volume ``vol_name`` (removed again on undo); returns the volume's path."""
    length = src.stat().st_size
    undo.add(f"delete volume {vol_name}", Action("volume.delete", {"pool": pool.name, "name": vol_name}))
    vol = pool.create_volume(xml_volume.volume_xml(vol_name, length, "raw", None, None),
                             what=f"creating volume {vol_name}")
    undo.made(key=vol.path)
    what = f"upload {vol_name}"
    report.phase(f"{what} ({format_size(length)})")
    progress(what, 0, length)
    with src.open("rb") as fh:
        vol.upload(fh, length, lambda sent: progress(what, sent, length))
    progress(what, length, length)
    return vol.path


def make_volumes(pool: hv_storage.Pool, name: str, plan: Plan, undo: StepLog, report: Reporter,
                 progress: BytesFn) -> dict[str, str]:
    """Upload the plan's ISO, kernel and initrd (the answer file injected) as volumes of ``pool``.

    Each registers its undo; ``progress`` hears the bytes sent. Returns the volume paths by role:
    ``iso``, ``kernel``, ``initrd``.
    """
    paths: dict[str, str] = {}
    if plan.cdrom is not None:
        paths["iso"] = _upload(pool, iso_volume(name), plan.cdrom, undo, report, progress)
        faults.point("upload-iso")
    if plan.kind == "kernel" and plan.kernel is not None:
        paths["kernel"] = _upload(pool, kernel_volume(name), plan.kernel, undo, report, progress)
        if plan.initrd is not None:
            paths["initrd"] = _upload(pool, initrd_volume(name), plan.initrd, undo, report, progress)
    if plan.kind == "location" and plan.location is not None and plan.boot_files is not None:
        layout = plan.boot_files.layout
        with tempfile.TemporaryDirectory(prefix="kvmhub-installer-") as tmp, \
                media_tool.open_media(plan.location) as media:
            kernel, initrd = Path(tmp) / "kernel", Path(tmp) / "initrd"
            report.phase(f"extract {layout.kernel}, {layout.initrd}")
            media.extract(layout.kernel, kernel)
            media.extract(layout.initrd, initrd)
            if plan.answer is not None:
                report.phase(f"inject {plan.answer.name} into the initrd")
                media_tool.inject(initrd, {plan.answer.name: plan.answer.data})
            paths["kernel"] = _upload(pool, kernel_volume(name), kernel, undo, report, progress)
            paths["initrd"] = _upload(pool, initrd_volume(name), initrd, undo, report, progress)
        faults.point("upload-installer")
    return paths


# --------------------------------------------------------------------------- the VM definition


def _free_target(bus: str, disks: list[DiskSpec]) -> str:
    used = {d.target for d in disks}
    prefix = _TARGET_PREFIX[bus]
    for i in range(26):
        if (target := prefix + chr(ord("a") + i)) not in used:
            return target
    raise InvalidInput("too many disks on one bus", hint="remove some disks")


def apply(spec: VMSpec, plan: Plan, pool: str, paths: dict[str, str]) -> VMSpec:
    """``spec`` with the plan's CD-ROM, boot configuration, VNC display and owned volumes."""
    disks = list(spec.disks)
    if plan.cdrom is not None:
        cdrom_order = 1 if plan.kind == "iso" else None
        if cdrom_order is not None:
            # the CD-ROM boots first; its installer's reboot then lands on the installed disk
            disks = [d.model_copy(update={"boot_order": 2}) if i == 0 else d for i, d in enumerate(disks)]
        disks.append(DiskSpec(
            target=_free_target(plan.cdrom_bus, disks), bus=plan.cdrom_bus, device="cdrom", format="raw",
            readonly=True, source=DiskSource(pool=pool, volume=iso_volume(spec.name)), boot_order=cdrom_order,
        ))
    boot = spec.boot
    if "kernel" in paths:
        boot = BootSpec(order=spec.boot.order, kernel=paths["kernel"], initrd=paths.get("initrd"),
                        cmdline=plan.cmdline)
    owned = [*spec.meta.owned_volumes, *(f"{pool}/{v}" for v in plan.volumes(spec.name))]
    meta = spec.meta.model_copy(update={"owned_volumes": owned, "install_boot": plan.install_boot})
    graphics = plan.graphics if plan.graphics is not None else spec.graphics
    return spec.model_copy(update={"disks": disks, "boot": boot, "graphics": graphics, "meta": meta})


def domain_xml(xml: str, plan: Plan) -> str:
    """The XML to define: for an unattended install, its kernel boot made one-shot."""
    return lifecycle.install_boot_xml(xml) if plan.install_boot == "kernel" else xml


def after_start(hv: Hypervisor, dom: hv_domains.Domain) -> str | None:
    """Once kvmhub's installer run has started, make later starts boot the disk.

    Only a VM whose metadata records an installer boot is changed. Returns what the user should know,
    or None when it was no installer run.
    """
    inactive = dom.xml(inactive=True)
    kind = lifecycle.install_boot_of(inactive)
    if kind is None:
        return None
    hv_domains.define(hv, lifecycle.after_install_xml(inactive))
    if kind == "kernel":
        return f"installer run: {dom.name} powers off when the installer reboots; start it again to boot its disk"
    return f"installer run: the CD-ROM boots first this time; later starts of {dom.name} boot its disk first"


def boot_note(dom: hv_domains.Domain, running: bool, xml: str | None = None) -> str | None:
    """How an installer or kernel boot runs, for ``show``; None for a plain disk boot. ``xml``: the definition
    it reads (the live one while the VM runs), when the caller has it already."""
    if xml is None:
        xml = dom.xml() if running else dom.xml(inactive=True)
    when = "this run" if running else "the next start"
    if lifecycle.install_boot_of(xml) == "cdrom":
        return (f"installer CD-ROM first for {when} only: later starts boot the disk first "
                "(the CD-ROM stays attached)")
    boot = domain_from_xml(xml).boot
    if boot.kernel is None:
        return None
    if lifecycle.is_install_boot(xml):
        return (f"installer kernel {boot.kernel} for {when} only: the VM powers off when the installer reboots, "
                f"then `kvmhub start {dom.name}` boots the installed disk")
    text = f"kernel {boot.kernel}"
    if boot.initrd:
        text += f", initrd {boot.initrd}"
    if boot.cmdline:
        text += f", cmdline {boot.cmdline!r}"
    return text

