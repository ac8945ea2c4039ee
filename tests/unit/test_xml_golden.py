"""Golden XML: what kvmhub hands libvirt, reviewed as diffs.

Rewrite the files with ``pytest tests/unit --regenerate-output`` and review ``git diff``.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.models import (
    Bandwidth,
    BootSpec,
    CPUTune,
    DiskSource,
    DiskSpec,
    GraphicsSpec,
    IOTune,
    KvmhubMeta,
    NICSpec,
    SerialSpec,
    TPMSpec,
    VCPUPin,
    VMSpec,
)
from kvmhub.xml import (
    KVMHUB_NS,
    dir_pool_xml,
    domain_from_xml,
    domain_is_managed,
    domain_to_xml,
    metadata_from_xml,
    metadata_to_xml,
    network_from_xml,
    network_to_xml,
    pool_path_from_xml,
    volume_from_xml,
    volume_xml,
)
from kvmhub.xml.pool import pool_to_xml
from kvmhub.xml.secret import secret_usage_from_xml, volume_secret_xml
from tests.unit.test_xml_pool import POOL_SPECS

DATA = Path(__file__).parent / "data" / "xml"
HOSTILE = "<>&'\"; touch X"

DOMAINS: dict[str, VMSpec] = {
    "minimal": VMSpec(name="minimal"),
    "tcg": VMSpec(name="tcg-vm", domain_type="qemu", serial=None, guest_agent=False),
    "tiny": VMSpec(
        name="tiny-1",
        uuid="8f0c5e8e-7d0a-4a3c-9f57-2f8d7c1b6a01",
        vcpus=1,
        memory_mib=256,
        machine="q35",
        disks=[
            DiskSpec(target="vda", source=DiskSource(pool="default", volume="tiny-1.qcow2")),
            DiskSpec(
                target="sda",
                bus="sata",
                device="cdrom",
                format="raw",
                readonly=True,
                source=DiskSource(pool="default", volume="tiny-1-seed.iso"),
            ),
        ],
        nics=[NICSpec(network="default", mac="52:54:00:12:34:56")],
        serial=SerialSpec(log_file="/var/log/libvirt/qemu/tiny-1-serial.log"),
        meta=KvmhubMeta(
            image="tiny",
            created="2024-05-01T12:00:00Z",
            owned_volumes=["default/tiny-1.qcow2", "default/tiny-1-seed.iso"],
        ),
    ),
    "installer": VMSpec(
        name="debian-install",
        vcpus=2,
        memory_mib=2048,
        machine="q35",
        disks=[
            DiskSpec(target="vda", source=DiskSource(pool="default", volume="debian-install.qcow2")),
            DiskSpec(
                target="sda",
                bus="sata",
                device="cdrom",
                format="raw",
                readonly=True,
                source=DiskSource(path="/var/lib/kvmhub/iso/debian-12.5.0-amd64-netinst.iso"),
            ),
        ],
        nics=[NICSpec(network="default")],
        graphics=GraphicsSpec(),
        boot=BootSpec(order=["cdrom", "hd"]),
        meta=KvmhubMeta(owner="alice", project="lab", owned_volumes=["default/debian-install.qcow2"]),
    ),
    "direct-kernel": VMSpec(
        name="kernel-boot",
        disks=[DiskSpec(format="raw", cache="unsafe", source=DiskSource(path="/var/lib/kvmhub/root.img"))],
        boot=BootSpec(
            order=[],
            kernel="/var/lib/kvmhub/boot/vmlinuz",
            initrd="/var/lib/kvmhub/boot/initrd.img",
            cmdline="console=ttyS0 root=/dev/vda rw quiet",
        ),
        serial=SerialSpec(log_file="/var/log/kvmhub/kernel-boot.log"),
    ),
    "multi": VMSpec(
        name="db.lab-2",
        uuid="0b6f3e2c-5a41-4d8e-a2f9-6c1d2e3f4a5b",
        vcpus=4,
        memory_mib=8192,
        disks=[
            DiskSpec(target="vda", cache="none", source=DiskSource(pool="fast", volume="db-root.qcow2")),
            DiskSpec(
                target="vdb",
                format="raw",
                cache="directsync",
                serial="DATA-01",
                source=DiskSource(path="/dev/vg0/db-data"),
            ),
            DiskSpec(
                target="sdb",
                bus="scsi",
                format="raw",
                cache="writeback",
                source=DiskSource(path="/srv/scratch.raw"),
            ),
        ],
        nics=[
            NICSpec(network="default", mac="52:54:00:aa:bb:01"),
            NICSpec(bridge="br0", mac="52:54:00:aa:bb:02", model="e1000"),
            NICSpec(network="backend", model="rtl8139"),
        ],
        graphics=GraphicsSpec(listen="0.0.0.0", port=5907),  # noqa: S104 - VNC open to the LAN, on purpose
        boot=BootSpec(order=["hd", "network"]),
        meta=KvmhubMeta(stack="shop", tags=["db", "prod"], owned_volumes=["fast/db-root.qcow2"]),
    ),
    "limits": VMSpec(
        name="limited",
        uuid="5d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        domain_type="qemu",
        vcpus=2,
        max_vcpus=4,
        memory_mib=384,
        current_memory_mib=320,
        max_memory_mib=1024,
        memory_slots=4,
        dimms_mib=[128],
        cputune=CPUTune(
            shares=3072,
            period=100000,
            quota=12500,
            vcpupin=[VCPUPin(vcpu=0, cpuset="0"), VCPUPin(vcpu=1, cpuset="0-1")],
            emulatorpin="1",
        ),
        memory_limit_mib=2048,
        io_weight=500,
        disks=[
            DiskSpec(
                target="vda",
                source=DiskSource(pool="default", volume="limited.qcow2"),
                iotune=IOTune(total_bytes_sec=2 * 1024**2, read_iops_sec=200, write_iops_sec=100),
            ),
            DiskSpec(
                target="vdb",
                format="raw",
                source=DiskSource(pool="default", volume="limited-data.raw"),
                iotune=IOTune(read_bytes_sec=10 * 1024**2, write_bytes_sec=5 * 1024**2),
            ),
        ],
        nics=[NICSpec(network="default", mac="52:54:00:aa:bb:03",
                      bandwidth=Bandwidth(inbound_kbs=1024, outbound_kbs=512))],
        meta=KvmhubMeta(image="tiny"),
    ),
    "tpm": VMSpec(
        name="tpm-vm",
        uuid="3c2b1a09-8f7e-4d6c-9b5a-0f1e2d3c4b5a",
        domain_type="qemu",
        disks=[DiskSpec(target="vda", source=DiskSource(pool="default", volume="tpm-vm.qcow2"))],
        tpm=TPMSpec(model="tpm-crb", backend="emulator", version="2.0"),
    ),
    "hostile": VMSpec(
        name="hostile",
        description=f"{HOSTILE}\n$(reboot) `id` ]]> <!-- -->",
        disks=[DiskSpec(format="raw", source=DiskSource(path=f'/srv/it\'s "odd" & <{HOSTILE}>.img'))],
        serial=SerialSpec(log_file=f"/var/log/{HOSTILE}.log"),
        boot=BootSpec(kernel="/boot/vmlinuz", cmdline=f"console=ttyS0 x={HOSTILE}"),
        meta=KvmhubMeta(
            owner=HOSTILE,
            tags=[HOSTILE, "</kvmhub:tag><kvmhub:owner>mallory</kvmhub:owner>", "  spaced  "],
        ),
    ),
}

HOSTILE_META = KvmhubMeta(
    image="tiny",
    owner=HOSTILE,
    project="p&q",
    stack="<stack/>",
    created="2024-05-01T12:00:00Z",
    tags=[HOSTILE, "a", ""],
    owned_volumes=["default/x.qcow2", "pool with spaces/vol'1"],
)


@dataclass(frozen=True)
class Golden:
    file: str
    render: Callable[[], str]
    schema: str | None  # virt-xml-validate schema name; None for a fragment with no schema


def _domain_case(name: str, spec: VMSpec) -> Golden:
    return Golden(f"domain-{name}.xml", lambda: domain_to_xml(spec), "domain")


GOLDENS: list[Golden] = [
    *(_domain_case(name, spec) for name, spec in DOMAINS.items()),
    Golden("metadata-hostile.xml", lambda: metadata_to_xml(HOSTILE_META), None),
    Golden(
        "network-nat.xml",
        lambda: network_to_xml(
            "kvmhub-nat",
            "nat",
            ipaddress.IPv4Network("10.77.0.0/24"),
            ("10.77.0.100", "10.77.0.200"),
            "kvbr-nat",
            "lab.internal",
        ),
        "network",
    ),
    Golden(
        "network-isolated.xml",
        lambda: network_to_xml("isolated", "isolated", ipaddress.IPv4Network("192.168.250.0/28")),
        "network",
    ),
    Golden("pool-dir.xml", lambda: dir_pool_xml("kvmhub-images", "/var/lib/kvmhub/images"), "storagepool"),
    *(Golden(f"pool-{key}.xml", partial(pool_to_xml, spec), "storagepool") for key, spec in POOL_SPECS.items()),
    Golden("volume-raw.xml", lambda: volume_xml("data.raw", 10 * 1024**3, "raw"), "storagevol"),
    Golden(
        "volume-overlay.xml",
        lambda: volume_xml(
            "vm1.qcow2", 20 * 1024**3, "qcow2", "/var/lib/kvmhub/images/debian-12.qcow2", "qcow2"
        ),
        "storagevol",
    ),
    Golden("secret-volume.xml", lambda: volume_secret_xml(f"/kvmhub/{HOSTILE}/vda", f"key of {HOSTILE}"), "secret"),
]


def test_golden_secret_reads_back() -> None:
    assert secret_usage_from_xml((DATA / "secret-volume.xml").read_text()) == f"/kvmhub/{HOSTILE}/vda"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda g: g.file)
def test_output_matches_golden(golden: Golden, regenerate_output: bool) -> None:
    path = DATA / golden.file
    text = golden.render()
    if regenerate_output:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing; run pytest tests/unit --regenerate-output"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("golden", [g for g in GOLDENS if g.schema], ids=lambda g: g.file)
def test_golden_passes_libvirt_schema(golden: Golden) -> None:
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.skip("virt-xml-validate is not installed (libvirt-clients)")
    assert golden.schema is not None
    proc = subprocess.run(
        [validator, str(DATA / golden.file), golden.schema], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_golden_file_has_a_case() -> None:
    assert {p.name for p in DATA.glob("*.xml")} == {g.file for g in GOLDENS}


@pytest.mark.parametrize("name", DOMAINS)
def test_golden_domain_reads_back(name: str) -> None:
    text = (DATA / f"domain-{name}.xml").read_text(encoding="utf-8")
    assert domain_from_xml(text) == DOMAINS[name]
    assert domain_is_managed(text)


def test_golden_metadata_reads_back() -> None:
    text = (DATA / "metadata-hostile.xml").read_text(encoding="utf-8")
    assert metadata_from_xml(text) == HOSTILE_META


def test_hostile_strings_are_escaped_not_interpreted() -> None:
    text = (DATA / "domain-hostile.xml").read_text(encoding="utf-8")
    assert "&lt;&gt;&amp;'\"; touch X" in text  # element text
    assert "&lt;&gt;&amp;'&quot;; touch X" in text  # attribute value
    assert "<kvmhub:owner>mallory" not in text
    root = etree.fromstring(text.encode())
    owners = root.findall(f"metadata/{{{KVMHUB_NS}}}vm/{{{KVMHUB_NS}}}owner")
    assert [o.text for o in owners] == [HOSTILE]
    assert root.find("devices/disk/source") is not None
    assert root.findtext("description") == DOMAINS["hostile"].description


def test_kvm_and_tcg_differ_only_where_they_should() -> None:
    kvm = etree.fromstring((DATA / "domain-minimal.xml").read_bytes())
    tcg = etree.fromstring((DATA / "domain-tcg.xml").read_bytes())
    assert (kvm.get("type"), tcg.get("type")) == ("kvm", "qemu")
    assert kvm.find("cpu") is not None and kvm.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert tcg.find("cpu") is None


def test_golden_network_reads_back() -> None:
    nat = network_from_xml((DATA / "network-nat.xml").read_text(encoding="utf-8"))
    assert nat.name == "kvmhub-nat"
    assert nat.mode == "nat"
    assert nat.subnet == ipaddress.IPv4Network("10.77.0.0/24")
    assert nat.dhcp_range == ("10.77.0.100", "10.77.0.200")
    assert (nat.bridge, nat.domain) == ("kvbr-nat", "lab.internal")
    isolated = network_from_xml((DATA / "network-isolated.xml").read_text(encoding="utf-8"))
    assert (isolated.mode, isolated.subnet, isolated.dhcp_range, isolated.bridge) == (
        "isolated",
        ipaddress.IPv4Network("192.168.250.0/28"),
        None,
        None,
    )


def test_golden_pool_and_volumes_read_back() -> None:
    assert pool_path_from_xml((DATA / "pool-dir.xml").read_text()) == "/var/lib/kvmhub/images"
    raw = volume_from_xml((DATA / "volume-raw.xml").read_text())
    assert (raw.name, raw.capacity_bytes, raw.allocation_bytes, raw.format) == (
        "data.raw",
        10 * 1024**3,
        0,
        "raw",
    )
    assert raw.backing_path is None
    overlay = volume_from_xml((DATA / "volume-overlay.xml").read_text())
    assert (overlay.backing_path, overlay.backing_format) == (
        "/var/lib/kvmhub/images/debian-12.qcow2",
        "qcow2",
    )
