"""`--os` on create: the variant's devices, machine type and minimums reach the libvirt definition, and QEMU
accepts them (the VMs are started, not booted: the point is the hardware, not the guest)."""

from __future__ import annotations

from lxml import etree

from kvmhub.testing import TestHost
from tests.integration.conftest import LAB_NET, Runner

KVMHUB_NS = {"k": "https://kvmhub.dev/xmlns/1"}


def _domain(host: TestHost, vm: str) -> etree._Element:
    return etree.fromstring(host.virsh("dumpxml", vm).stdout.encode())


def _machine(dom: etree._Element) -> str:
    os_type = dom.find("os/type")
    return os_type.get("machine", "") if os_type is not None else ""


def _leftovers(host: TestHost, name: str) -> list[str]:
    found = [f"domain {name}"] if name in host.virsh("list", "--all", "--name").stdout.split() else []
    vols = host.virsh("vol-list", "default").stdout
    return found + [line.split()[0] for line in vols.splitlines() if line.strip().startswith(name + "-")]


def test_os_ls_json_lists_the_db(kvmhub: Runner) -> None:
    r = kvmhub("os", "ls", "debian", "--json")
    assert r.code == 0, r.err
    ids = {o["id"] for o in r.json()}
    assert "debian11" in ids and all("debian" in (o["id"] + o["name"]).lower() for o in r.json())
    r = kvmhub("os", "ls", "win")
    assert r.code == 0 and r.out.splitlines()[0].split() == ["SHORT", "ID", "NAME", "FAMILY", "VERSION", "EOL"]


def test_old_and_windows_variants_get_emulated_devices_qemu_accepts(prepared_host: TestHost, kvmhub: Runner) -> None:
    cases = {"os-win2k": ("win2k", "ide", "hd", "pc-i440fx"), "os-win10": ("win10", "sata", "sd", "pc-q35")}
    created = {}
    try:
        for vm, (variant, bus, _, _) in cases.items():
            expected = kvmhub("os", "show", variant, "--json").json()
            assert (expected["disk_bus"], expected["nic_model"]) == (bus, "e1000")
            created[vm] = kvmhub("create", vm, "--image", "tiny", "--os", variant, "--network", LAB_NET,
                                 "--memory", "192M")
            assert created[vm].code == 0, created[vm].err
        for vm, (variant, bus, prefix, machine) in cases.items():
            info = kvmhub("show", vm, "--json").json()
            assert info["state"] == "running"  # QEMU took the IDE/SATA disks, the CD-ROM seed, e1000
            assert [(d["target"], d["bus"], d["device"]) for d in info["disks"]] == [
                (f"{prefix}a", bus, "disk"), (f"{prefix}b", bus, "cdrom")]
            assert [n["model"] for n in info["nics"]] == ["e1000"]
            dom = _domain(prepared_host, vm)
            assert _machine(dom).startswith(machine)
            assert dom.findtext("metadata/k:vm/k:os", namespaces=KVMHUB_NS) == variant
        # 192 MiB is below Windows 10's minimum, not Windows 2000's: warned, not refused
        assert "below Microsoft Windows 10's minimum" in created["os-win10"].err
        assert "minimum" not in created["os-win2k"].err
    finally:
        for vm in cases:
            kvmhub("rm", vm)
    for vm in cases:
        assert _leftovers(prepared_host, vm) == []


def test_unknown_newer_variant_falls_back_with_a_note(prepared_host: TestHost, kvmhub: Runner) -> None:
    vm = "os-deb12"
    try:
        r = kvmhub("create", vm, "--image", "tiny", "--os", "debian12", "--network", LAB_NET, "--memory", "192M",
                   "--no-start")
        assert r.code == 0, r.err
        assert "debian12 is not in this host's osinfo-db" in r.err and "using debian11" in r.err
        assert "192 MiB of memory is below Debian 11's minimum" in r.err
        info = kvmhub("show", vm, "--json").json()
        assert [(d["target"], d["bus"]) for d in info["disks"]] == [("vda", "virtio"), ("vdb", "virtio")]
        assert [n["model"] for n in info["nics"]] == ["virtio"]
        dom = _domain(prepared_host, vm)
        assert _machine(dom).startswith("pc-q35")
        assert dom.findtext("metadata/k:vm/k:os", namespaces=KVMHUB_NS) == "debian11"
    finally:
        kvmhub("rm", vm)


def test_bad_variant_or_small_disk_is_refused_and_nothing_is_made(prepared_host: TestHost, kvmhub: Runner) -> None:
    before = prepared_host.virsh("vol-list", "default").stdout
    r = kvmhub("create", "os-bad", "--image", "tiny", "--os", "debain11", "--no-start")
    assert r.code == 2, r.err
    assert "unknown OS variant 'debain11'" in r.err and "debian11" in r.err and "kvmhub os ls" in r.err
    r = kvmhub("create", "os-bad", "--image", "tiny", "--os", "debian11", "--disk", "1G", "--no-start")
    assert r.code == 2, r.err
    assert "minimum storage" in r.err and "10G" in r.err
    assert _leftovers(prepared_host, "os-bad") == []
    assert prepared_host.virsh("vol-list", "default").stdout == before
