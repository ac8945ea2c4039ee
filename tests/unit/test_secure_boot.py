"""`create --firmware uefi` and `--secure-boot` over libvirt's test driver: the definition asks libvirt's firmware
autoselection for OVMF (with Secure Boot, enrolled keys and SMM on q35), passes libvirt's schema, reads back,
`show` reports it in both modes, and what cannot work is refused before anything is made."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kvmhub.errors import HostProblem, InvalidInput, exit_code, http_status
from kvmhub.hv import Hypervisor, domcaps
from kvmhub.hv import domains as hv_domains
from kvmhub.models import CreateRequest, HostMedia
from kvmhub.services.storage.nvram import nvram_path
from kvmhub.services.vm import create as vm_create
from kvmhub.services.vm import firmware, lifecycle
from kvmhub.xml import domain_from_xml, domain_to_xml
from kvmhub.xml._util import Element, parse
from kvmhub.xml.firmware import offered, parse_firmware
from tests.unit.cli_server import both, cli, serving

URI = "test:///default"
UUID = "0d1c2b3a-4f5e-4a6b-9c8d-7e6f5a4b3c2d"
SECURE = CreateRequest(name="sb1", image="tiny", secure_boot=True)


def _xml(req: CreateRequest) -> str:
    return domain_to_xml(vm_create.build_spec(req, 256, "qemu", UUID))


def _at(root: Element, path: str) -> Element:
    el = root.find(path)
    assert el is not None, path
    return el


def _features(xml: str) -> dict[str, str]:
    return {el.get("name", ""): el.get("enabled", "") for el in parse(xml, "domain").iterfind("os/firmware/feature")}


def test_secure_boot_asks_libvirt_for_enrolled_keys_smm_and_q35() -> None:
    xml = _xml(SECURE)
    root = parse(xml, "domain")
    assert _at(root, "os").get("firmware") == "efi"
    assert _at(root, "os/type").get("machine") == "q35"
    assert _features(xml) == {"secure-boot": "yes", "enrolled-keys": "yes"}
    assert _at(root, "features/smm").get("state") == "on"
    spec = domain_from_xml(xml)
    assert (spec.firmware, spec.secure_boot, spec.machine) == ("uefi", True, "q35")


def test_uefi_without_secure_boot_says_so_to_libvirt() -> None:
    xml = _xml(CreateRequest(name="u1", image="tiny", firmware="uefi"))
    root = parse(xml, "domain")
    assert _at(root, "os").get("firmware") == "efi"
    assert _features(xml) == {"secure-boot": "no", "enrolled-keys": "no"}
    assert root.find("features/smm") is None
    assert (domain_from_xml(xml).firmware, domain_from_xml(xml).secure_boot) == ("uefi", False)


def test_the_default_is_bios_as_before() -> None:
    xml = _xml(CreateRequest(name="b1", image="tiny"))
    root = parse(xml, "domain")
    assert _at(root, "os").get("firmware") is None and root.find("os/firmware") is None
    assert _at(root, "os/type").get("machine") is None
    assert (domain_from_xml(xml).firmware, domain_from_xml(xml).secure_boot) == ("bios", False)


@pytest.mark.parametrize("req", [SECURE, CreateRequest(name="u1", image="tiny", firmware="uefi")], ids=["sb", "uefi"])
def test_the_definition_passes_libvirts_schema(req: CreateRequest, tmp_path: Path) -> None:
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.skip("virt-xml-validate is not installed (libvirt-clients)")
    (tmp_path / "d.xml").write_text(_xml(req))
    proc = subprocess.run([validator, str(tmp_path / "d.xml"), "domain"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


LIVE = """<domain type='qemu'><name>x</name><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
<firmware><feature enabled='yes' name='enrolled-keys'/><feature enabled='yes' name='secure-boot'/></firmware>
<loader readonly='yes' secure='{secure}' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
<nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/x_VARS.fd</nvram></os></domain>"""


@pytest.mark.parametrize(("xml", "seen"), [
    (LIVE.format(secure="yes"), ("uefi", True)),  # libvirt's live XML once it picked the firmware
    (LIVE.format(secure="no"), ("uefi", False)),  # the loader wins over the features asked for
    ("<domain><os><type>hvm</type><loader type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os></domain>",
     ("uefi", False)),  # a loader given by hand (virt-install --boot uefi of old)
    ("<domain><os><type>hvm</type><loader type='rom'>/usr/share/seabios/bios.bin</loader></os></domain>",
     ("bios", False)),
])
def test_firmware_is_read_from_any_domain(xml: str, seen: tuple[str, bool]) -> None:
    assert parse_firmware(parse(xml, "domain")) == seen


def _domcaps(loader_secure: str, firmware: str = "<value>efi</value>") -> str:
    return ("<domainCapabilities><os supported='yes'>"
            f"<enum name='firmware'>{firmware}</enum><loader supported='yes'>"
            "<value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>"
            f"<enum name='secure'>{loader_secure}</enum></loader></os></domainCapabilities>")


SB_CAPS = _domcaps("<value>yes</value><value>no</value>")  # libvirt 9.0 here, for q35, with ovmf installed
NO_SB_CAPS = _domcaps("<value>no</value>")
NO_EFI_CAPS = _domcaps("<value>no</value>", firmware="")


@pytest.mark.parametrize(("caps", "seen"), [
    (SB_CAPS, (True, True)), (NO_SB_CAPS, (True, False)), (NO_EFI_CAPS, (False, False)),
    ("<domainCapabilities><os supported='no'/></domainCapabilities>", (False, False)),
])
def test_the_host_offers_what_libvirt_lists(caps: str, seen: tuple[bool, bool]) -> None:
    assert offered(caps) == seen


def test_a_host_without_secure_boot_firmware_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []

    def caps(hv: Hypervisor, virttype: str, machine: str | None = None) -> str:
        asked.append(machine)
        return NO_SB_CAPS

    monkeypatch.setattr(domcaps, "domain_capabilities", caps)
    with Hypervisor(URI) as hv:
        firmware.check_host(hv, "kvm", CreateRequest(name="u1", firmware="uefi"))  # plain UEFI is there
        with pytest.raises(HostProblem) as caught:
            firmware.check_host(hv, "kvm", SECURE)
    assert asked == ["q35", "q35"]
    err = caught.value
    assert (err.code, exit_code(err), http_status(err)) == ("host.no_secure_boot", 5, 503)
    assert err.message == "this host has no UEFI firmware with Secure Boot (--secure-boot)"
    assert "OVMF_CODE_4M.ms.fd" in (err.hint or "") and "without --secure-boot" in (err.hint or "")


def test_a_host_without_ovmf_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(domcaps, "domain_capabilities", lambda hv, virttype, machine=None: NO_EFI_CAPS)
    with Hypervisor(URI) as hv, pytest.raises(HostProblem) as caught:
        firmware.check_host(hv, "qemu", SECURE)
    assert caught.value.code == "host.no_uefi" and "`apt-get install ovmf`" in (caught.value.hint or "")


def test_the_test_driver_cannot_tell_and_passes() -> None:
    with Hypervisor(URI) as hv:
        firmware.check_host(hv, "qemu", SECURE)


@pytest.mark.parametrize(("req", "said"), [
    (SECURE.model_copy(update={"firmware": "bios"}),
     "--secure-boot needs UEFI firmware, and --firmware bios was asked"),
    (SECURE.model_copy(update={"image": None, "kernel": HostMedia(path="/boot/vmlinuz")}),
     "--secure-boot cannot be used with --kernel"),
    (SECURE.model_copy(update={"kernel": HostMedia(path="/k"), "initrd": HostMedia(path="/i")}),
     "--secure-boot cannot be used with --kernel and --initrd"),
])
def test_secure_boot_that_cannot_work_is_refused(req: CreateRequest, said: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        firmware.check_request(req)
    assert (caught.value.code, caught.value.message) == ("vm.firmware_conflict", said)


def test_refusals_read_the_same_in_both_modes_and_make_nothing(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        local, remote = both(server, "create", "sb1", "--image", "tiny", "--secure-boot", "--firmware", "bios")
        assert local == remote
        assert local[0] == 2 and "--secure-boot needs UEFI firmware, and --firmware bios was asked" in local[2]
        assert "drop --firmware bios" in local[2]
        local, remote = both(server, "create", "sb1", "--image", "tiny", "--firmware", "efi")
        assert local == remote and local[0] == 2 and "--firmware efi: no such firmware" in local[2]
        code, _out, _err = both(server, "show", "sb1")[1]
        assert code == 3


def test_the_api_refuses_an_unknown_firmware(client: TestClient) -> None:
    answer = client.post("/api/v1/vms", json={"name": "sb1", "image": "tiny", "firmware": "coreboot"})
    assert answer.status_code == 422 and "firmware" in answer.json()["error"]
    answer = client.post("/api/v1/vms", json={"name": "sb1", "image": "tiny", "firmware": "bios", "secure_boot": True})
    assert answer.status_code == 400 and answer.json()["code"] == "vm.firmware_conflict"
    assert answer.json()["error"] == "secure_boot needs UEFI firmware, and firmware bios was asked"
    assert client.get("/api/v1/vms/sb1").status_code == 404


def test_show_reports_the_firmware_in_both_modes(client: TestClient) -> None:
    with Hypervisor(URI) as hv:
        hv_domains.define(hv, _xml(SECURE))
        info = lifecycle.show(hv, "sb1")
        assert (info.firmware, info.secure_boot) == ("uefi", True)
    shown = client.get("/api/v1/vms/sb1").json()
    assert (shown["firmware"], shown["secure_boot"]) == ("uefi", True)
    assert "firmware: uefi (Secure Boot)" in cli("show", "sb1")
    assert "firmware: bios" in cli("show", "test")  # the test driver's own VM
    assert "secure_boot" not in cli("show", "sb1")


def test_the_nvram_of_autoselected_firmware_is_libvirts_own_file() -> None:
    # libvirt 9.0 names no <nvram> in the definition until it starts; export and clone carry the file it makes
    assert nvram_path(parse(_xml(SECURE), "domain")) == "/var/lib/libvirt/qemu/nvram/sb1_VARS.fd"
    assert nvram_path(parse(_xml(CreateRequest(name="b1", image="tiny")), "domain")) is None
    assert nvram_path(parse(LIVE.format(secure="yes"), "domain")) == "/var/lib/libvirt/qemu/nvram/x_VARS.fd"
