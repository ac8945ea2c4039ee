"""Clone, export + import and backup restore `--as` keep a domain's definition, on a private test host.

The domains are the corpus the rewrite's unit test uses (`virt-install --print-xml`, here for the test host
itself), each with a disk made from the `tiny` image, defined with virsh as another tool would. What each
kvmhub verb defines must be the source's definition with only its identity changed (name, UUID, MACs, disk
sources, NVRAM path, serial log, kvmhub metadata). The sources are defined once for the module; only the
UEFI source and its clone boot (OVMF running the tiny kernel directly, as in test_snapshots_uefi.py).
"""

from __future__ import annotations

import difflib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from kvmhub.services.host import accel
from kvmhub.testing import TestHost
from tests.domain_corpus import CORPUS, OVMF_CODE, OVMF_VARS, c14n, print_xml, without_identity
from tests.integration.conftest import LAB_NET, Result, Runner
from tests.integration.test_snapshots_uefi import extract_kernel

BOOTED = "KVMHUB-BOOTED"
BOOT_TIMEOUT = 240.0
NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
# all are defined, none dropped: libvirt checks host devices, bridges, shares and hugepages only at start
CLONED = sorted(CORPUS)
# import refuses shares, bridges and host files, backup restore --as too (README); a backup starts the VM paused
EXPORTED = ["uefi", "uefi-secure", "firmware-efi", "spice", "rng-watchdog-agent", "tuning", "tpm"]
NOT_EXPORTED = {"hostdev": ["PCI host device 0000:02:00.0", "USB host device 0x1234:0x5678"]}
RESTORED = ["uefi", "tpm", "video-virtio-vnc", "rng-watchdog-agent"]
UEFI_BOOT = "ll-uefi-boot"


def vm(case: str) -> str:
    return f"ll-{case}"


def ok(r: Result, what: str) -> Result:
    assert r.code == 0, f"kvmhub {what} exited {r.code}: {r.err}{r.out}"
    return r


def inactive(host: TestHost, name: str) -> str:
    return host.virsh("dumpxml", "--inactive", name).stdout


def identity_free(xml: str) -> bytes:
    root = without_identity(xml)
    for log in root.findall("devices/console/log"):  # the console mirrors the first serial port
        log.getparent().remove(log)  # type: ignore[union-attr]
    return c14n(root)


def diff(a: bytes, b: bytes) -> str:
    def lines(c: bytes) -> list[str]:
        return etree.tostring(etree.fromstring(c), pretty_print=True, encoding="unicode").splitlines()
    return "\n".join(difflib.unified_diff(lines(a), lines(b), lineterm="", n=2))


def assert_same_but_identity(host: TestHost, src: str, new: str) -> etree._Element:
    """`new`'s definition is `src`'s with its own identity; returns `new`'s parsed definition."""
    a, b = inactive(host, src), inactive(host, new)
    assert identity_free(b) == identity_free(a), \
        f"{new} differs from {src} beyond identity:\n{diff(identity_free(a), identity_free(b))}"
    old, out = etree.fromstring(a.encode()), etree.fromstring(b.encode())
    assert out.findtext("name") == new and out.findtext("uuid") != old.findtext("uuid")
    old_macs = {m.get("address") for m in old.iterfind("devices/interface/mac")}
    new_macs = {m.get("address") for m in out.iterfind("devices/interface/mac")}
    assert new_macs and not new_macs & old_macs, (old_macs, new_macs)
    old_src = {etree.tostring(s) for s in old.iterfind("devices/disk/source")}
    assert not old_src & {etree.tostring(s) for s in out.iterfind("devices/disk/source")}
    log = out.find("devices/serial/log")
    assert log is not None and log.get("file") == f"/var/log/libvirt/qemu/{new}-serial.log"
    if old.findtext("os/nvram"):
        assert out.findtext("os/nvram") == f"{NVRAM_DIR}/{new}_VARS.fd"
    return out


def tiny_volume(host: TestHost) -> tuple[str, int]:
    """Path and capacity (bytes) of the `tiny` image's volume."""
    names = [line.split()[0] for line in host.virsh("vol-list", "kvmhub-images").stdout.splitlines()
             if line.strip().startswith("tiny") and line.split()[0].endswith(".qcow2")]
    assert names, host.virsh("vol-list", "kvmhub-images").stdout
    path = host.virsh("vol-path", names[0], "--pool", "kvmhub-images").stdout.strip()
    info = host.virsh("vol-info", "--bytes", path).stdout
    capacity = next(int(line.split()[1]) for line in info.splitlines() if line.startswith("Capacity"))
    return path, capacity


def define(host: TestHost, case: str, name: str, tmp: Path, tiny: tuple[str, int],
           boot: tuple[Path, Path] | None = None) -> None:
    """Domain `name` of corpus `case` with a disk backed by the tiny image, defined with virsh."""
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = f"{name}.qcow2"
    etree.SubElement(vol, "capacity").text = str(tiny[1])
    target = etree.SubElement(vol, "target")
    etree.SubElement(target, "format", type="qcow2")
    etree.SubElement(target, "compat").text = "1.1"  # as kvmhub makes them (backups need v3 for dirty bitmaps)
    backing = etree.SubElement(vol, "backingStore")
    etree.SubElement(backing, "path").text = tiny[0]
    etree.SubElement(backing, "format", type="qcow2")
    (tmp / f"{name}-vol.xml").write_bytes(etree.tostring(vol))
    host.virsh("vol-create", "default", str(tmp / f"{name}-vol.xml"))
    disk = host.virsh("vol-path", f"{name}.qcow2", "--pool", "default").stdout.strip()
    # virt-install gives a UEFI guest a TPM by default on a real host; the corpus says where it wants one
    extra = CORPUS[case] if "--tpm" in CORPUS[case] else [*CORPUS[case], "--tpm", "none"]
    xml = print_xml(case, extra, connect=host.uri, name=name, disk=disk, network=LAB_NET, memory=256,
                    virt_type=accel.domain_type(accel.accelerator().accelerator))
    if boot is not None:  # OVMF cannot boot the tiny disk's SYSLINUX: give it the kernel directly
        root = etree.fromstring(xml.encode())
        os_el = root.find("os")
        assert os_el is not None
        for tag, text in (("kernel", str(boot[0])), ("initrd", str(boot[1])),
                          ("cmdline", "console=ttyS0,115200n8 quiet panic=10")):
            etree.SubElement(os_el, tag).text = text
        xml = etree.tostring(root, encoding="unicode")
    path = tmp / f"{name}.xml"
    path.write_text(xml)
    host.virsh("define", str(path))
    # libvirt orders the controllers it adds only when it reads them back: define its own output once more
    path.write_text(inactive(host, name))
    host.virsh("define", str(path))


def defined(host: TestHost) -> set[str]:
    return set(host.virsh("list", "--all", "--name").stdout.split())


def forget(host: TestHost, kvmhub: Runner, name: str, made_by_kvmhub: bool) -> None:
    if made_by_kvmhub and name in defined(host):
        kvmhub("rm", name)
    if name in defined(host):
        host.virsh("destroy", name, check=False)
        host.virsh("undefine", name, "--nvram", "--checkpoints-metadata", "--snapshots-metadata", check=False)
    if not made_by_kvmhub:
        host.virsh("vol-delete", f"{name}.qcow2", "--pool", "default", check=False)


def wait_booted(host: TestHost, name: str, timeout: float = BOOT_TIMEOUT) -> None:
    log = host.inside(f"/var/log/libvirt/qemu/{name}-serial.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and BOOTED in log.read_text(errors="replace"):
            return
        time.sleep(1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no serial log)"
    raise AssertionError(f"{name} printed no {BOOTED} in {timeout:.0f} s; serial:\n{tail}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(prepared_host: TestHost, kvmhub: Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Every corpus domain defined on the test host, shut off; with the copies the tests make, removed after."""
    host = prepared_host
    tmp = tmp_path_factory.mktemp("lossless")
    tiny = tiny_volume(host)
    made: list[str] = []
    try:
        for case in CLONED:
            define(host, case, vm(case), tmp, tiny)
            made.append(vm(case))
        yield made
    finally:
        for suffix in ("c", "i", "r"):
            for case in CLONED:
                forget(host, kvmhub, f"{vm(case)}-{suffix}", made_by_kvmhub=True)
        for name in made:
            forget(host, kvmhub, name, made_by_kvmhub=False)


@pytest.mark.parametrize("case", CLONED)
def test_clone_keeps_the_definition_but_identity(prepared_host: TestHost, kvmhub: Runner, corpus: list[str],
                                                 case: str) -> None:
    src = vm(case)
    r = ok(kvmhub("clone", src, f"{src}-c"), f"clone {src}")
    assert_same_but_identity(prepared_host, src, f"{src}-c")
    said = r.err + r.out
    if case == "hostdev":
        for dev in NOT_EXPORTED["hostdev"]:
            assert f"the clone keeps the {dev}: only one of the two VMs can run at a time" in said, said
    if case == "tpm":
        assert "the clone gets an empty emulated TPM" in said, said
    if case not in ("hostdev", "tpm"):
        assert "warning" not in said, said


@pytest.mark.parametrize("case", EXPORTED)
def test_export_then_import_keeps_the_definition_but_identity(
    prepared_host: TestHost, kvmhub: Runner, corpus: list[str], tmp_path: Path, case: str
) -> None:
    src, archive = vm(case), tmp_path / f"{case}.tar.gz"
    ok(kvmhub("export", src, "--to", str(archive)), f"export {src}")
    ok(kvmhub("import", str(archive), "--as", f"{src}-i"), f"import {archive.name}")
    assert_same_but_identity(prepared_host, src, f"{src}-i")


@pytest.mark.parametrize("case", sorted(NOT_EXPORTED))
def test_export_of_host_devices_is_refused(kvmhub: Runner, corpus: list[str], tmp_path: Path,
                                                   case: str) -> None:
    archive = tmp_path / "refused.tar.gz"
    r = kvmhub("export", vm(case), "--to", str(archive))
    assert r.code == 4, r.err + r.out
    assert f"cannot export VM {vm(case)}: it has" in r.err, r.err
    for what in NOT_EXPORTED[case]:
        assert what in r.err, r.err
    assert "export, and add it again on the new host" in r.err, r.err
    assert list(tmp_path.iterdir()) == []


def test_export_carries_the_nvram_of_a_uefi_vm(prepared_host: TestHost, kvmhub: Runner, corpus: list[str],
                                               tmp_path: Path) -> None:
    host, src = prepared_host, vm("uefi")
    ok(kvmhub("start", src), "start")  # libvirt makes the NVRAM file from the template at the first start
    ok(kvmhub("kill", src), "kill")
    nvram = host.inside(f"{NVRAM_DIR}/{src}_VARS.fd")
    assert nvram.is_file()
    archive = tmp_path / "uefi.tar.gz"
    ok(kvmhub("export", src, "--to", str(archive)), "export")
    ok(kvmhub("import", str(archive), "--as", f"{src}-x"), "import")
    try:
        copy = host.inside(f"{NVRAM_DIR}/{src}-x_VARS.fd")
        assert copy.is_file() and sha256(copy) == sha256(nvram)
    finally:
        forget(host, kvmhub, f"{src}-x", made_by_kvmhub=True)
    assert not host.inside(f"{NVRAM_DIR}/{src}-x_VARS.fd").exists(), "kvmhub rm left the NVRAM file"


@pytest.mark.parametrize("case", RESTORED)
def test_backup_restored_as_a_new_vm_keeps_the_definition_but_identity(
    prepared_host: TestHost, kvmhub: Runner, corpus: list[str], tmp_path: Path, case: str
) -> None:
    src, where = vm(case), tmp_path / "backup"
    ok(kvmhub("backup", src, "--to", str(where)), f"backup {src}")
    r = ok(kvmhub("backup", "restore", src, "--from", str(where), "--as", f"{src}-r"), f"restore {src}")
    assert_same_but_identity(prepared_host, src, f"{src}-r")
    if case == "uefi":
        assert "a backup holds no NVRAM" in r.err + r.out


@pytest.fixture(scope="module")
def uefi_source(prepared_host: TestHost, kvmhub: Runner, tiny_image_file: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The corpus UEFI domain booting the tiny kernel through OVMF, booted once then killed (its NVRAM written)."""
    if not (Path(OVMF_CODE).is_file() and Path(OVMF_VARS).is_file()):
        pytest.skip(f"{OVMF_CODE} / {OVMF_VARS} missing: apt-get install ovmf")
    host = prepared_host
    tmp = tmp_path_factory.mktemp("uefi-boot")
    boot = extract_kernel(tiny_image_file, tmp)
    try:
        define(host, "uefi", UEFI_BOOT, tmp, tiny_volume(host), boot=boot)
        ok(kvmhub("start", UEFI_BOOT), "start")
        wait_booted(host, UEFI_BOOT)
        ok(kvmhub("kill", UEFI_BOOT), "kill")
        yield UEFI_BOOT
    finally:
        forget(host, kvmhub, f"{UEFI_BOOT}-c", made_by_kvmhub=True)
        forget(host, kvmhub, UEFI_BOOT, made_by_kvmhub=False)


def test_a_uefi_clone_gets_a_copy_of_the_nvram_and_boots(prepared_host: TestHost, kvmhub: Runner,
                                                         uefi_source: str) -> None:
    host, src, dst = prepared_host, uefi_source, f"{uefi_source}-c"
    src_nvram = host.inside(f"{NVRAM_DIR}/{src}_VARS.fd")
    assert src_nvram.read_bytes() != Path(OVMF_VARS).read_bytes(), "OVMF wrote no variable: the copy proves nothing"
    ok(kvmhub("clone", src, dst), "clone")
    new = assert_same_but_identity(host, src, dst)
    dst_nvram = host.inside(str(new.findtext("os/nvram")))
    assert dst_nvram != src_nvram and sha256(dst_nvram) == sha256(src_nvram)
    ok(kvmhub("start", dst), "start the clone")
    wait_booted(host, dst)
    assert host.virsh("domstate", dst).stdout.strip() == "running"
