"""spec -> XML -> spec is the identity, for generated specs and through libvirt's own parser."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmhub.errors import InvalidInput
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
    KVMHUB_PREFIX,
    disk_from_xml,
    disk_to_xml,
    domain_from_xml,
    domain_is_managed,
    domain_to_xml,
    interface_from_xml,
    interface_to_xml,
    metadata_from_xml,
    metadata_to_xml,
    network_bridge_from_xml,
    network_from_xml,
    network_subnet_from_xml,
    network_to_xml,
    volume_from_xml,
    volume_xml,
)

DATA = Path(__file__).parent / "data" / "xml"

# Printable text XML 1.0 can carry, plus the whitespace controls it allows.
text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    max_size=40,
)
opt_text = st.none() | text
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True)

disk_sources = st.one_of(
    st.just(DiskSource()),
    st.builds(DiskSource, pool=text, volume=text),
    st.builds(DiskSource, path=text),
    st.builds(DiskSource, path=text.map(lambda t: "/dev/" + t)),
)
rates = st.none() | st.integers(min_value=0, max_value=2**50)
iotunes = st.none() | st.builds(
    IOTune,
    total_bytes_sec=rates,
    read_bytes_sec=rates,
    write_bytes_sec=rates,
    total_iops_sec=rates,
    read_iops_sec=rates,
    write_iops_sec=rates,
)
kbs = st.none() | st.integers(min_value=1, max_value=2**31)
bandwidths = st.none() | st.builds(Bandwidth, inbound_kbs=kbs, outbound_kbs=kbs)
cpusets = st.from_regex(r"[0-9]{1,3}(-[0-9]{1,3})?(,[0-9]{1,3})*", fullmatch=True)
cputunes = st.none() | st.builds(
    CPUTune,
    shares=st.none() | st.integers(min_value=2, max_value=262144),
    period=st.none() | st.integers(min_value=1000, max_value=1000000),
    quota=st.none() | st.integers(min_value=-1, max_value=2**40),
    vcpupin=st.lists(st.builds(VCPUPin, vcpu=st.integers(min_value=0, max_value=64), cpuset=cpusets), max_size=3),
    emulatorpin=st.none() | cpusets,
)
disks = st.builds(
    DiskSpec,
    target=text,
    bus=st.sampled_from(["virtio", "scsi", "sata", "ide", "usb"]),
    device=st.sampled_from(["disk", "cdrom"]),
    format=st.sampled_from(["qcow2", "raw"]),
    source=disk_sources,
    readonly=st.booleans(),
    cache=st.none() | st.sampled_from(["none", "writeback", "writethrough", "unsafe", "directsync"]),
    serial=opt_text,
    iotune=iotunes,
)
nic_models = st.sampled_from(["virtio", "e1000", "rtl8139"])
links = st.none() | st.sampled_from(["up", "down"])
nics = st.one_of(
    st.builds(NICSpec, network=text, mac=opt_text, model=nic_models, bandwidth=bandwidths, link=links,
              filter=opt_text),
    st.builds(NICSpec, bridge=text, mac=opt_text, model=nic_models, bandwidth=bandwidths, link=links),
    st.builds(NICSpec, mac=opt_text, model=nic_models, bandwidth=bandwidths),
)
metas = st.builds(
    KvmhubMeta,
    image=opt_text,
    owner=opt_text,
    project=opt_text,
    stack=opt_text,
    created=opt_text,
    tags=st.lists(text, max_size=4),
    owned_volumes=st.lists(text, max_size=3),
)
@st.composite
def sized(draw: st.DrawFn, spec: VMSpec) -> VMSpec:
    """``spec`` with consistent hotplug headroom, balloon target, DIMMs and limits."""
    update: dict[str, Any] = {"cputune": draw(cputunes)}
    if draw(st.booleans()):
        update["max_vcpus"] = spec.vcpus + draw(st.integers(min_value=0, max_value=64))
    dimms = draw(st.lists(st.integers(min_value=1, max_value=4096), max_size=3))
    memory = spec.memory_mib + sum(dimms)
    update["memory_mib"] = memory
    if draw(st.booleans()):
        update["dimms_mib"] = dimms
        update["max_memory_mib"] = memory + draw(st.integers(min_value=0, max_value=2**20))
        update["memory_slots"] = draw(st.integers(min_value=len(dimms) or 1, max_value=32))
    else:
        update["memory_mib"] = spec.memory_mib
    if draw(st.booleans()):
        update["current_memory_mib"] = draw(st.integers(min_value=1, max_value=update["memory_mib"] - 1))
    update["memory_limit_mib"] = draw(st.none() | st.integers(min_value=1, max_value=2**30))
    update["io_weight"] = draw(st.none() | st.integers(min_value=100, max_value=1000))
    return spec.model_copy(update=update)


base_specs = st.builds(
    VMSpec,
    name=names,
    uuid=opt_text,
    domain_type=st.sampled_from(["kvm", "qemu"]),
    arch=st.sampled_from(["x86_64", "i686", "aarch64"]) | text,
    machine=opt_text,
    vcpus=st.integers(min_value=1, max_value=4096),
    memory_mib=st.integers(min_value=16, max_value=2**32),
    description=opt_text,
    disks=st.lists(disks, max_size=4),
    nics=st.lists(nics, max_size=3),
    serial=st.none() | st.builds(SerialSpec, log_file=opt_text),
    graphics=st.none()
    | st.builds(GraphicsSpec, listen=text, port=st.integers(min_value=-1, max_value=65535)),
    boot=st.builds(
        BootSpec,
        order=st.lists(st.sampled_from(["hd", "cdrom", "network"]), max_size=3),
        kernel=opt_text,
        initrd=opt_text,
        cmdline=opt_text,
    ),
    guest_agent=st.booleans(),
    tpm=st.none() | st.builds(TPMSpec),
    meta=metas,
)
specs = base_specs.flatmap(sized)


@settings(max_examples=300)
@given(specs)
def test_domain_round_trips(spec: VMSpec) -> None:
    xml = domain_to_xml(spec)
    assert domain_from_xml(xml) == spec
    assert domain_is_managed(xml)


@given(disks)
def test_disk_round_trips(disk: DiskSpec) -> None:
    assert disk_from_xml(disk_to_xml(disk)) == disk


@given(nics)
def test_interface_round_trips(nic: NICSpec) -> None:
    assert interface_from_xml(interface_to_xml(nic)) == nic


@given(metas)
def test_metadata_round_trips(meta: KvmhubMeta) -> None:
    assert metadata_from_xml(metadata_to_xml(meta)) == meta


@given(
    name=names,
    mode=st.sampled_from(["isolated", "nat"]),
    prefix=st.integers(min_value=8, max_value=30),
    base=st.integers(min_value=0, max_value=2**32 - 1),
    with_range=st.booleans(),
    bridge=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True),
    domain=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6})?", fullmatch=True),
)
def test_network_round_trips(
    name: str, mode: Any, prefix: int, base: int, with_range: bool, bridge: str | None, domain: str | None
) -> None:
    subnet = ipaddress.IPv4Network((base, prefix), strict=False)
    hosts = (
        list(subnet.hosts())[1:] if prefix >= 24 else [subnet.network_address + 2, subnet.network_address + 9]
    )
    dhcp = (str(hosts[0]), str(hosts[-1])) if with_range else None
    xml = network_to_xml(name, mode, subnet, dhcp, bridge, domain)
    facts = network_from_xml(xml)
    assert (facts.name, facts.mode, facts.subnet, facts.dhcp_range, facts.bridge, facts.domain) == (
        name,
        mode,
        subnet,
        dhcp,
        bridge,
        domain,
    )
    assert network_bridge_from_xml(xml) == bridge
    assert network_subnet_from_xml(xml) == subnet


@given(
    name=text,
    capacity=st.integers(min_value=0, max_value=2**60),
    fmt=st.sampled_from(["qcow2", "raw"]),
    backing=st.none() | st.tuples(text, st.sampled_from(["qcow2", "raw"])),
)
def test_volume_round_trips(name: str, capacity: int, fmt: str, backing: tuple[str, str] | None) -> None:
    facts = volume_from_xml(volume_xml(name, capacity, fmt, *(backing or (None, None))))
    assert (facts.name, facts.capacity_bytes, facts.format, facts.allocation_bytes) == (
        name,
        capacity,
        fmt,
        0,
    )
    assert (facts.backing_path, facts.backing_format) == (backing or (None, None))


def test_libvirt_network_reads() -> None:
    xml = """<network><name>default</name><uuid>5c6b3f0e-7f3a-4c2b-9a1d-0e8f7a6b5c4d</uuid>
      <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
      <bridge name='virbr0' stp='on' delay='0'/><mac address='52:54:00:0a:0b:0c'/>
      <ip family='ipv6' address='fd00::1' prefix='64'/>
      <ip address='192.168.122.1' netmask='255.255.255.0'>
        <dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>"""
    facts = network_from_xml(xml)
    assert facts.mode == "nat"
    assert facts.bridge == "virbr0"
    assert facts.subnet == ipaddress.IPv4Network("192.168.122.0/24")
    assert facts.dhcp_range == ("192.168.122.2", "192.168.122.254")


def test_qemu_dumpxml_reads_what_the_spec_models() -> None:
    spec = domain_from_xml((DATA / "libvirt" / "qemu-running.xml").read_text(encoding="utf-8"))
    assert spec == VMSpec(
        name="web-1",
        uuid="3e1f9a8c-2b4d-4f6a-9c0e-7d5b1a2c3e4f",
        domain_type="kvm",
        arch="x86_64",
        machine="pc-q35-8.2",
        vcpus=2,
        max_vcpus=4,
        memory_mib=2048,
        current_memory_mib=1024,
        description="web server & cache",
        disks=[
            DiskSpec(target="vda", cache="none", source=DiskSource(pool="default", volume="web-1.qcow2")),
            DiskSpec(
                target="sda",
                bus="sata",
                device="cdrom",
                format="raw",
                readonly=True,
                source=DiskSource(path="/var/lib/libvirt/images/web-1-seed.iso"),
            ),
            DiskSpec(
                target="vdb",
                format="raw",
                source=DiskSource(protocol="rbd", name="rbd/web-1-data", host="ceph-mon1", port=6789),
            ),
        ],
        nics=[
            NICSpec(network="default", mac="52:54:00:6b:3c:58"),
            NICSpec(bridge="br0", mac="52:54:00:6b:3c:59", model="e1000"),
        ],
        serial=SerialSpec(log_file="/var/log/kvmhub/web-1-serial.log"),
        graphics=GraphicsSpec(listen="127.0.0.1", port=-1),
        boot=BootSpec(order=["hd"]),
        guest_agent=True,
        meta=KvmhubMeta(
            image="debian-12",
            owner="alice",
            tags=["web"],
            owned_volumes=["default/web-1.qcow2", "default/web-1-seed.iso"],
        ),
    )


def test_metadata_reads_libvirts_unprefixed_form() -> None:
    assert metadata_from_xml("<vm><image>x</image><tag>a</tag></vm>") == KvmhubMeta(image="x", tags=["a"])


@pytest.mark.parametrize(("text", "project"), [
    (None, "default"),
    ("<vm><image>x</image></vm>", "default"),
    ("<vm><project>web</project><project>other</project></vm>", "web"),
    ("<vm><project></project></vm>", "default"),
    (f'<kvmhub:vm xmlns:kvmhub="{KVMHUB_NS}"><kvmhub:project>web</kvmhub:project></kvmhub:vm>', "web"),
    ('<vm><x:project xmlns:x="urn:other">web</x:project></vm>', "default"),
    ("<other><project>web</project></other>", "default"),
    ("<vm><project>web", "default"),
])
def test_a_vms_project_is_read_from_its_metadata_alone(text: str | None, project: str) -> None:
    from kvmhub.xml.metadata import project_from_xml

    assert project_from_xml(text) == project
    if text is not None and project == "web":
        assert metadata_from_xml(text).project == project


@pytest.mark.parametrize(
    ("spec", "cause"),
    [
        (VMSpec(name="a", description="bell\x07"), "control characters"),
        (VMSpec(name="a", meta=KvmhubMeta(tags=["nul\x00"])), "control characters"),
        (VMSpec(name="a", disks=[DiskSpec(source=DiskSource(pool="p", volume="v", path="/x"))]), None),
        (VMSpec(name="a", disks=[DiskSpec(source=DiskSource(pool="p"))]), None),
        (VMSpec(name="a", nics=[NICSpec(network="default", bridge="br0")]), None),
    ],
)
def test_unrepresentable_specs_are_refused(spec: VMSpec, cause: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        domain_to_xml(spec)
    if cause:
        assert cause in str(info.value)


@pytest.mark.parametrize("xml", ["<domain><name>x", "<network/>", "", "<domain><vcpu>two</vcpu></domain>"])
def test_bad_domain_xml_is_refused(xml: str) -> None:
    with pytest.raises(InvalidInput):
        domain_from_xml(xml)


def test_external_entities_are_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    xml = f"<!DOCTYPE d [<!ENTITY e SYSTEM 'file://{secret}'>]><domain><name>x</name><description>&e;</description></domain>"
    assert "s3cret" not in (domain_from_xml(xml).description or "")


def test_network_rejects_range_outside_subnet() -> None:
    with pytest.raises(InvalidInput, match="does not fit"):
        network_to_xml("n", "nat", ipaddress.IPv4Network("10.0.0.0/24"), ("10.0.1.2", "10.0.1.9"))
    with pytest.raises(InvalidInput, match="does not fit"):
        network_to_xml("n", "nat", ipaddress.IPv4Network("10.0.0.0/24"), ("10.0.0.1", "10.0.0.9"))


def test_volume_requires_backing_format() -> None:
    with pytest.raises(InvalidInput, match="backing"):
        volume_xml("v", 1, "qcow2", "/base.qcow2", None)


# --- libvirt's own parser and formatter, through the test driver ---------------------------------


@pytest.fixture
def test_conn() -> Iterator[Any]:
    libvirt = pytest.importorskip("libvirt")
    conn = libvirt.open("test:///default")
    try:
        yield conn
    finally:
        conn.close()


def test_test_driver_domain_reads(test_conn: Any) -> None:
    spec = domain_from_xml(test_conn.lookupByName("test").XMLDesc(0))
    assert spec == VMSpec(
        name="test",
        uuid="6695eb01-f6a4-8304-79aa-97f2502e193f",
        domain_type="qemu",
        arch="i686",
        vcpus=2,
        memory_mib=8192,
        current_memory_mib=2048,
        disks=[DiskSpec(format="raw", source=DiskSource(path="/guest/diskimage1"))],
        nics=[NICSpec(network="default", mac="aa:bb:cc:dd:ee:ff")],
        serial=None,
        guest_agent=False,
    )
    assert not domain_is_managed(test_conn.lookupByName("test").XMLDesc(0))


def _with_libvirt_defaults(spec: VMSpec, dumped: VMSpec) -> VMSpec:
    """``spec`` plus what libvirt fills in on define: a uuid, NIC MACs, read-only CD-ROMs, boot from hd."""
    nics = [
        nic.model_copy(update={"mac": nic.mac or got.mac})
        for nic, got in zip(spec.nics, dumped.nics, strict=True)
    ]
    disks = [d.model_copy(update={"readonly": d.readonly or d.device == "cdrom"}) for d in spec.disks]
    boot = spec.boot.model_copy(update={"order": spec.boot.order or ["hd"]})
    return spec.model_copy(
        update={"uuid": spec.uuid or dumped.uuid, "nics": nics, "disks": disks, "boot": boot}
    )


@pytest.mark.parametrize("golden", sorted(p.name for p in DATA.glob("domain-*.xml")))
def test_libvirt_accepts_golden_domain_and_dumps_it_back(test_conn: Any, golden: str) -> None:
    libvirt = pytest.importorskip("libvirt")
    spec = domain_from_xml((DATA / golden).read_text(encoding="utf-8"))
    dom = test_conn.defineXML(domain_to_xml(spec))
    try:
        inactive = domain_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert inactive == _with_libvirt_defaults(spec, inactive)
        dom.create()
        running = domain_from_xml(dom.XMLDesc(0))
        assert running == inactive
        dom.destroy()
    finally:
        dom.undefine()


def test_metadata_through_libvirt_set_and_get(test_conn: Any) -> None:
    libvirt = pytest.importorskip("libvirt")
    meta = KvmhubMeta(image="tiny", owner="<>&'\"; touch X", tags=["a", "  b  "], owned_volumes=["p/v"])
    dom = test_conn.defineXML(domain_to_xml(VMSpec(name="meta-vm")))
    try:
        dom.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            metadata_to_xml(meta),
            KVMHUB_PREFIX,
            KVMHUB_NS,
            libvirt.VIR_DOMAIN_AFFECT_CONFIG,
        )
        got = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, KVMHUB_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        assert metadata_from_xml(got) == meta
        assert domain_from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).meta == meta
    finally:
        dom.undefine()
