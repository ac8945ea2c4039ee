"""Backup XML: golden ``<domainbackup>``/``<domaincheckpoint>`` requests (schema-checked), reading checkpoints,
and the backup chain arithmetic of the manifest.

Rewrite the golden files with ``pytest tests/unit --regenerate-output`` and review the diff.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.errors import NotFound
from kvmhub.models.backup import BackupManifest, BackupPoint
from kvmhub.services.snapshots.backups import chain_of
from kvmhub.xml.backup import backup_to_xml, checkpoint_from_xml, checkpoint_to_xml

DATA = Path(__file__).parent / "data" / "xml" / "backup"
HOSTILE = "<>&'\"; touch X $(reboot)"

REQUESTS: dict[str, tuple[str, str]] = {
    "backup-full": (backup_to_xml({"vda": "/srv/b/0001-full-vda.qcow2"}, ["vdb"]), "domainbackup"),
    "backup-incremental": (
        backup_to_xml({"vda": "/srv/b/0002-incremental-vda.qcow2", "vdc": "/srv/b/0002-incremental-vdc.qcow2"},
                      ["vdb"], incremental="kvmhub-backup-0001-1a2b3c4d"),
        "domainbackup",
    ),
    "checkpoint": (checkpoint_to_xml("kvmhub-backup-0002-5e6f7a8b", ["vda", "vdc"], ["vdb"],
                                     description='{"kvmhub-backup": "/srv/b", "point": "0002"}'), "domaincheckpoint"),
}


@pytest.mark.parametrize("case", REQUESTS)
def test_request_matches_golden(case: str, regenerate_output: bool) -> None:
    path = DATA / f"{case}.xml"
    text = REQUESTS[case][0]
    if regenerate_output:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", REQUESTS)
def test_request_passes_libvirt_schema(case: str) -> None:
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.skip("virt-xml-validate is not installed (libvirt-clients)")
    proc = subprocess.run([validator, str(DATA / f"{case}.xml"), REQUESTS[case][1]],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hostile_paths_and_descriptions_stay_text() -> None:
    root = etree.fromstring(backup_to_xml({"vda": HOSTILE}, []).encode())
    assert root.find("disks/disk/target").get("file") == HOSTILE  # type: ignore[union-attr]
    cp = etree.fromstring(checkpoint_to_xml("c", ["vda"], [], description=HOSTILE).encode())
    assert cp.findtext("description") == HOSTILE and len(cp) == 3


def test_reads_libvirts_checkpoint() -> None:
    info = checkpoint_from_xml((DATA / "libvirt-checkpoint.xml").read_text())
    assert (info.name, info.parent) == ("kvmhub-backup-0002-5e6f7a8b", "kvmhub-backup-0001-1a2b3c4d")
    assert info.disks == {"vda": "bitmap", "vdb": "no"}
    assert info.created is not None and info.created.startswith("2024-")
    assert info.description is not None and "/srv/b" in info.description


def _point(name: str, parent: str | None) -> BackupPoint:
    return BackupPoint(name=name, kind="incremental" if parent else "full", parent=parent, checkpoint=f"c{name}",
                       created="2024-01-01T00:00:00+00:00")


def test_chain_walks_back_to_the_last_full_backup() -> None:
    manifest = BackupManifest(vm="v", uuid="u", points=[
        _point("0001", None), _point("0002", "0001"), _point("0003", None), _point("0004", "0003")])
    assert [p.name for p in chain_of(manifest, None)] == ["0003", "0004"]
    assert [p.name for p in chain_of(manifest, "2")] == ["0001", "0002"]
    assert [p.name for p in chain_of(manifest, "0003")] == ["0003"]
    with pytest.raises(NotFound):
        chain_of(manifest, "0009")
    with pytest.raises(NotFound):
        chain_of(BackupManifest(vm="v", uuid="u"), None)
