"""Snapshot XML: golden ``<domainsnapshot>`` requests (schema-checked) and reading/redefining libvirt's own.

Rewrite the golden files with ``pytest tests/unit --regenerate-output`` and review the diff.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.errors import InvalidInput
from kvmhub.models.snapshot import SnapshotDisk, SnapshotSpec
from kvmhub.xml.snapshot import (
    domain_disks,
    redefine_xml,
    retarget_domain_disks,
    snapshot_domain_xml,
    snapshot_from_xml,
    snapshot_to_xml,
    uses_pflash,
)

DATA = Path(__file__).parent / "data" / "xml" / "snapshot"
HOSTILE = "<>&'\"; touch X $(reboot)"

SPECS: dict[str, SnapshotSpec] = {
    "internal": SnapshotSpec(
        name="before-upgrade",
        memory="internal",
        disks=[SnapshotDisk(target="vda", snapshot="internal"), SnapshotDisk(target="vdb", snapshot="no")],
    ),
    "external-disk-only": SnapshotSpec(
        name="nightly",
        description="disk only",
        disks=[
            SnapshotDisk(target="vda", snapshot="external", file="/var/lib/libvirt/images/vm-vda.nightly.qcow2",
                         format="qcow2"),
            SnapshotDisk(target="vdb", snapshot="no"),
        ],
    ),
    "external-memory": SnapshotSpec(
        name="uefi-1",
        memory="external",
        memory_file="/var/lib/libvirt/images/vm.uefi-1.memory",
        disks=[SnapshotDisk(target="vda", snapshot="external", file="/var/lib/libvirt/images/vm-vda.uefi-1.qcow2",
                            format="qcow2")],
    ),
    "hostile": SnapshotSpec(name="h", description=HOSTILE, disks=[SnapshotDisk(target="vda", snapshot="internal")]),
}


@pytest.mark.parametrize("case", SPECS)
def test_snapshot_request_matches_golden(case: str, regenerate_output: bool) -> None:
    path = DATA / f"request-{case}.xml"
    text = snapshot_to_xml(SPECS[case])
    if regenerate_output:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", SPECS)
def test_snapshot_request_passes_libvirt_schema(case: str) -> None:
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.skip("virt-xml-validate is not installed (libvirt-clients)")
    proc = subprocess.run([validator, str(DATA / f"request-{case}.xml"), "domainsnapshot"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hostile_description_is_text_not_markup() -> None:
    root = etree.fromstring(snapshot_to_xml(SPECS["hostile"]).encode())
    assert root.findtext("description") == HOSTILE
    assert len(root) == 4  # name, description, memory, disks: nothing injected


def test_memory_file_only_with_external_memory() -> None:
    with pytest.raises(InvalidInput):
        snapshot_to_xml(SnapshotSpec(name="x", memory="external"))
    with pytest.raises(InvalidInput):
        snapshot_to_xml(SnapshotSpec(name="x", memory="internal", memory_file="/tmp/m"))


def test_reads_libvirts_external_snapshot() -> None:
    info = snapshot_from_xml((DATA / "libvirt-external.xml").read_text(), vm="e1", current=True)
    assert (info.name, info.kind, info.parent, info.state, info.memory) == ("p2", "external", "p1",
                                                                            "disk-snapshot", False)
    assert info.current and info.created and info.created.startswith("20")
    assert [(d.target, d.snapshot) for d in info.disks] == [("vda", "external"), ("vdb", "no")]
    assert info.disks[0].file == "/var/lib/libvirt/images/e1-vda.p2.qcow2"
    # what the snapshot froze: the file vda used when it was taken; the read-only seed is not part of it
    assert set(info.frozen) == {"vda"}
    assert info.frozen["vda"].path == "/var/lib/libvirt/images/e1-vda.p1.qcow2"


def test_redefinition_rewrites_parent_overlay_and_frozen_file_only() -> None:
    original = (DATA / "libvirt-external.xml").read_text()
    text = redefine_xml(original, parent=None, overlays={"vda": "/p/new.qcow2"}, frozen={"vda": "/p/base.qcow2"})
    info = snapshot_from_xml(text, vm="e1")
    assert info.parent is None
    assert info.disks[0].file == "/p/new.qcow2"
    assert info.frozen["vda"].path == "/p/base.qcow2"
    before = snapshot_from_xml(original, vm="e1")
    assert (info.name, info.state, info.created, info.disks[1]) == (before.name, before.state, before.created,
                                                                    before.disks[1])
    reparented = snapshot_from_xml(redefine_xml(original, parent="p0"), vm="e1")
    assert reparented.parent == "p0" and reparented.disks == before.disks


def test_retarget_points_a_disk_at_a_new_file_and_drops_its_chain() -> None:
    domain = snapshot_domain_xml((DATA / "libvirt-external.xml").read_text())
    moved = retarget_domain_disks(domain, {"vda": "/p/top.qcow2"})
    disks = {d.target: d for d in domain_disks(moved)}
    assert disks["vda"].source is not None and disks["vda"].source.path == "/p/top.qcow2"
    assert disks["vda"].format == "qcow2"
    assert disks["vdb"].readonly and disks["vdb"].source is not None and disks["vdb"].source.volume
    root = etree.fromstring(moved.encode())
    vda = root.find("devices/disk/target[@dev='vda']/..")
    assert vda is not None and vda.find("backingStore") is None and vda.get("type") == "file"
    with pytest.raises(InvalidInput):
        retarget_domain_disks(domain, {"vdz": "/p/x"})
    with pytest.raises(InvalidInput):
        retarget_domain_disks(domain, {"vda']/..": "/p/x"})


def test_uefi_guests_are_recognised() -> None:
    bios = "<domain type='qemu'><name>a</name><os><type>hvm</type></os></domain>"
    efi = "<domain type='qemu'><name>a</name><os firmware='efi'><type>hvm</type></os></domain>"
    pflash = ("<domain type='qemu'><name>a</name><os><type>hvm</type>"
              "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader></os></domain>")
    assert (uses_pflash(bios), uses_pflash(efi), uses_pflash(pflash)) == (False, True, True)
