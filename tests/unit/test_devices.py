"""Host devices and passthrough over libvirt's test driver, whose host has no PCI or USB node devices: the
node devices are given as the XML a real host's libvirt writes, and the refusals are checked as a user sees them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kvmhub.errors import Conflict, HostProblem, InvalidInput, NotFound
from kvmhub.hv import Hypervisor, nodedevs
from kvmhub.hv import domains as hv_domains
from kvmhub.models import ProjectRequest
from kvmhub.server import accounts
from kvmhub.server.accounts import Role
from kvmhub.server.transport import Marked
from kvmhub.services import projects
from kvmhub.services.host import devices, passthrough
from kvmhub.xml.hostdev import given_devices, hostdev_to_xml, node_device_from_xml
from tests.unit.cli_server import run, serving
from tests.unit.test_projects import vm_xml


def pci(addr: tuple[int, int, int], name: str, cls: str, driver: str | None = None,
        group: tuple[int, list[tuple[int, int, int]]] | None = None, vendor: str = "0x10de") -> str:
    bus, slot, fn = addr
    drv = f"<driver><name>{driver}</name></driver>" if driver else ""
    grp = ""
    if group is not None:
        members = "".join(f"<address domain='0x0000' bus='{b:#04x}' slot='{s:#04x}' function='{f:#x}'/>"
                          for b, s, f in group[1])
        grp = f"<iommuGroup number='{group[0]}'>{members}</iommuGroup>"
    return (f"<device><name>pci_0000_{bus:02x}_{slot:02x}_{fn}</name>"
            f"<path>/sys/devices/pci0000:00/0000:{bus:02x}:{slot:02x}.{fn}</path><parent>computer</parent>{drv}"
            f"<capability type='pci'><class>{cls}</class><domain>0</domain><bus>{bus}</bus><slot>{slot}</slot>"
            f"<function>{fn}</function><product id='0x1234'>{name}</product>"
            f"<vendor id='{vendor}'>Maker</vendor>{grp}</capability></device>")


GPU_GROUP = (1, [(1, 0, 0), (1, 0, 1)])
NODES = [
    pci((0, 3, 0), "Virtio network device", "0x020000", "virtio-pci", vendor="0x1af4"),
    "<device><name>net_eth0_52_54_00_00_00_01</name><path>/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0"
    "</path><parent>pci_0000_00_03_0</parent><capability type='net'><interface>eth0</interface>"
    "<address>52:54:00:00:00:01</address></capability></device>",
    pci((1, 0, 0), "GPU", "0x030000", "nouveau", GPU_GROUP),
    pci((1, 0, 1), "GPU audio", "0x040300", "snd_hda_intel", GPU_GROUP),
    pci((2, 0, 0), "Accelerator", "0x120000", None, (2, [(2, 0, 0)])),
    pci((0, 0x1C, 0), "Root port", "0x060400", "pcieport", (3, [(0, 0x1C, 0), (3, 0, 0)])),
    pci((3, 0, 0), "Spare NIC", "0x020000", "vfio-pci", (3, [(0, 0x1C, 0), (3, 0, 0)])),
    "<device><name>usb_1_3</name><parent>usb_usb1</parent><driver><name>usb</name></driver>"
    "<capability type='usb_device'><bus>1</bus><device>3</device><product id='0xc52b'>Unifying Receiver</product>"
    "<vendor id='0x046d'>Logitech, Inc.</vendor></capability></device>",
    "<device><name>mdev_4b20d080_1b54_4048_85b3_a6a62d165c01</name><parent>pci_0000_02_00_0</parent>"
    "<capability type='mdev'><type id='nvidia-63'/><uuid>4b20d080-1b54-4048-85b3-a6a62d165c01</uuid>"
    "<iommuGroup number='12'/></capability></device>",
]
HOLDER = ("<domain type='test'><name>holder</name><memory>1048576</memory><os><type>hvm</type></os><devices>"
          "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x02' "
          "slot='0x00' function='0x0'/></source></hostdev></devices></domain>")


@pytest.fixture
def hv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hypervisor]:
    """The test driver, its host showing NODES, with VM `holder` given the accelerator 0000:02:00.0."""
    monkeypatch.setattr(nodedevs, "node_device_xmls", lambda _hv: list(NODES))
    with Hypervisor("test:///default") as conn:
        conn.conn.defineXML(HOLDER)
        yield conn


def test_node_device_xml_reads_address_class_driver_and_iommu_group() -> None:
    gpu = node_device_from_xml(NODES[2])
    assert (gpu.pci_address, gpu.class_word, gpu.driver, gpu.iommu_group) == ("0000:01:00.0", "display", "nouveau", 1)
    assert gpu.group_addresses == ["0000:01:00.0", "0000:01:00.1"]
    usb = node_device_from_xml(NODES[7])
    ids = (usb.kind, usb.vendor_id, usb.product_id, usb.usb_bus, usb.usb_device)
    assert ids == ("usb_device", "046d", "c52b", 1, 3)
    assert node_device_from_xml(NODES[8]).mdev_uuid == "4b20d080-1b54-4048-85b3-a6a62d165c01"


@pytest.mark.parametrize("index", [2, 7, 8])
def test_the_hostdev_kvmhub_writes_names_the_device_it_was_made_for(index: int) -> None:
    dev = node_device_from_xml(NODES[index])
    xml = hostdev_to_xml(dev)
    domain = f"<domain><name>x</name><devices>{xml}</devices></domain>"
    (given,) = given_devices(domain)
    assert given.matches(dev)
    assert not any(given.matches(node_device_from_xml(other)) for i, other in enumerate(NODES) if i != index)


def test_host_devices_lists_ids_groups_viability_and_the_vm_given_each(hv: Hypervisor) -> None:
    found = {d.id: d for d in devices.list_devices(hv)}
    assert list(found) == ["0000:00:03.0", "0000:00:1c.0", "0000:01:00.0", "0000:01:00.1", "0000:02:00.0",
                           "0000:03:00.0", "046d:c52b", "4b20d080-1b54-4048-85b3-a6a62d165c01"]
    assert found["0000:00:03.0"].iommu_group is None and found["0000:00:03.0"].group_viable is None
    assert found["0000:01:00.0"].group_viable is False and found["0000:01:00.0"].group == ["0000:01:00.1"]
    assert found["0000:03:00.0"].group_viable is True  # its group's other member is a root port
    assert found["0000:02:00.0"].vm == "holder" and found["0000:03:00.0"].vm is None
    assert (found["046d:c52b"].kind, found["046d:c52b"].usb_address) == ("usb", "001.003")
    assert found["4b20d080-1b54-4048-85b3-a6a62d165c01"].parent == "0000:02:00.0"


def _refused(hv: Hypervisor, device: str) -> Exception:
    before = hv.conn.lookupByName("test").XMLDesc(2)
    with pytest.raises((InvalidInput, NotFound, Conflict, HostProblem)) as caught:
        passthrough.attach(hv, "test", device)
    assert hv.conn.lookupByName("test").XMLDesc(2) == before
    return caught.value


def test_attach_without_an_iommu_is_refused_naming_the_kernel_option(hv: Hypervisor) -> None:
    err = _refused(hv, "00:03.0")
    assert isinstance(err, HostProblem) and err.code == "host.iommu_off"
    assert "IOMMU is off" in err.message and "intel_iommu=on" in (err.hint or "")


def test_attach_of_a_device_whose_group_has_host_drivers_names_them(hv: Hypervisor) -> None:
    err = _refused(hv, "0000:01:00.0")
    assert isinstance(err, Conflict) and err.code == "device.group_not_viable"
    assert "0000:01:00.1 (snd_hda_intel)" in (err.cause or "")


def test_attach_of_a_device_another_vm_has_says_which(hv: Hypervisor) -> None:
    err = _refused(hv, "02:00.0")
    assert isinstance(err, Conflict) and err.code == "device.in_use"
    assert "holder" in err.message and "`kvmhub device detach holder 0000:02:00.0`" in (err.hint or "")


def test_attach_of_a_device_the_host_uses_says_what_for(hv: Hypervisor, monkeypatch: pytest.MonkeyPatch) -> None:
    nic = "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0"
    monkeypatch.setattr(devices, "host_uses", lambda _hv, _nodes: {nic: "NIC eth0 with 10.0.0.5"})
    err = _refused(hv, "00:03.0")
    assert isinstance(err, Conflict) and err.code == "device.host_in_use"
    assert "NIC eth0 with 10.0.0.5" in err.message


@pytest.mark.parametrize("device", ["00:03.0'/>", "$(reboot)", "00:03.0;id", "1af4:1041 x", "", "0000:00:03.8"])
def test_malformed_device_ids_are_refused_as_input(hv: Hypervisor, device: str) -> None:
    err = _refused(hv, device)
    assert isinstance(err, InvalidInput) and "PCI address" in (err.cause or "")


def test_unknown_and_ambiguous_devices_are_refused(hv: Hypervisor) -> None:
    err = _refused(hv, "0000:7f:00.0")
    assert isinstance(err, NotFound) and err.code == "device.not_found"
    err = _refused(hv, "10de:1234")  # the GPU, its audio part, the accelerator ... share the made-up id
    assert isinstance(err, InvalidInput) and "0000:01:00.0" in err.message


def test_detach_of_a_device_the_vm_lacks_is_not_found(hv: Hypervisor) -> None:
    with pytest.raises(NotFound, match=r"VM test has no host device 0000:02:00\.0"):
        passthrough.detach(hv, "test", "0000:02:00.0")
    given, shown = passthrough.given_to_vm(hv, "holder", "02:00.0")
    assert given.pci_address == shown.id == "0000:02:00.0"


def test_the_api_lists_devices_and_refuses_attach_with_the_reason(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodedevs, "node_device_xmls", lambda _hv: list(NODES))
    listed = client.get("/api/v1/hosts/local/devices")
    assert listed.status_code == 200 and listed.json()[2]["id"] == "0000:01:00.0"
    refused = client.post("/api/v1/vms/test/devices", json={"device": "0000:00:03.0"})
    assert refused.status_code == 503 and refused.json()["code"] == "host.iommu_off"
    assert client.post("/api/v1/vms/test/devices", json={"device": "00:03.0'/>"}).status_code in (400, 422)
    gone = client.delete("/api/v1/vms/test/devices/0000:02:00.0")
    assert gone.status_code == 404 and gone.json()["code"] == "device.not_found"
    with Hypervisor("test:///default") as hv:
        assert "<hostdev" not in hv.conn.lookupByName("test").XMLDesc(2)


def test_the_cli_says_the_same_through_the_server(tmp_path_factory: pytest.TempPathFactory) -> None:
    with serving(tmp_path_factory.mktemp("server")) as server:
        for args, code in ((("host", "devices", "--json"), 0), (("device", "attach", "test", "00:03.0"), 3),
                           (("device", "detach", "test", "046d:c52b"), 3)):
            local, remote = run("--local", *args), run("--remote", server, *args)
            assert local[0] == remote[0] == code, (local, remote)
            assert local[1] == remote[1] and local[2].splitlines()[-1:] == remote[2].splitlines()[-1:]
            said = {0: "[]", 3: "error: "}[code]
            assert said in (local[1] if code == 0 else local[2])
        assert "VM test has no host device 046d:c52b" in local[2]


def test_another_projects_vm_is_not_named_in_listings_or_refusals(
        app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodedevs, "node_device_xmls", lambda _hv: list(NODES))
    with TestClient(Marked(app, "tcp")) as tcp:
        for p in ("a", "b"):
            projects.create_project(ProjectRequest(name=p))
        hv: Hypervisor = app.state.hv
        hv_domains.define(hv, vm_xml("va", "a"))
        hv_domains.define(hv, vm_xml("vb", "b").replace("</domain>", "<devices>" + HOLDER.split("<devices>")[1]))
        accounts.add_user("alice", Role.OPERATOR, "correct horse battery")
        projects.add_member("a", "alice")
        alice = {"Authorization": f"Bearer {accounts.add_token('alice').secret}"}
        listed = {d["id"]: d["vm"] for d in tcp.get("/api/v1/hosts/local/devices", headers=alice).json()}
        assert listed["0000:02:00.0"] == "(another project's VM)"
        refused = tcp.post("/api/v1/vms/va/devices", headers=alice, json={"device": "02:00.0"})
        assert refused.status_code == 409 and refused.json()["code"] == "device.in_use"
        assert "vb" not in refused.text and "another project's VM" in refused.json()["error"]
        assert tcp.get("/api/v1/hosts/local/devices").status_code == 401  # tcp callers need a token
