"""The firmware of `create --firmware bios|uefi` and `--secure-boot`: what a request may ask for, whether the
host's libvirt can give it, and the VMSpec fields it sets (libvirt autoselects OVMF; :mod:`kvmhub.xml.firmware`)."""

from __future__ import annotations

from kvmhub.errors import HostProblem, InvalidInput
from kvmhub.hv import domcaps
from kvmhub.hv.connection import Hypervisor
from kvmhub.models import VMSpec
from kvmhub.models.requests_vm import CreateRequest
from kvmhub.xml.firmware import offered

MACHINE = "q35"  # Secure Boot needs SMM, which QEMU's q35 machine has


def wanted(req: CreateRequest) -> str:
    """``uefi`` when the request asks for it or for Secure Boot, else ``bios``."""
    return "uefi" if req.secure_boot or req.firmware == "uefi" else "bios"


def check_request(req: CreateRequest) -> None:
    """Refuse Secure Boot with BIOS firmware or with a kernel booted directly (InvalidInput)."""
    if not req.secure_boot:
        return
    if req.firmware == "bios":
        raise InvalidInput("{opt:secure_boot} needs UEFI firmware, and {opt:firmware} bios was asked",
                           cause="Secure Boot is a feature of UEFI firmware; a BIOS has none",
                           hint="drop {opt:firmware} bios (Secure Boot implies uefi), or drop {opt:secure_boot}",
                           code="vm.firmware_conflict")
    direct = [opt for opt, given in (("{opt:kernel}", req.kernel), ("{opt:initrd}", req.initrd),
                                     ("{opt:location}", req.location)) if given is not None]
    if direct:
        raise InvalidInput(f"{{opt:secure_boot}} cannot be used with {' and '.join(direct)}",
                           cause="QEMU loads that kernel itself, so Secure Boot's firmware never verifies it",
                           hint="boot a signed installer from {opt:iso}, or an image ({opt:image}); or drop "
                                "{opt:secure_boot}",
                           code="vm.firmware_conflict")


def check_host(hv: Hypervisor, domain_type: str, req: CreateRequest) -> None:
    """Raise HostProblem when the host's libvirt offers no UEFI firmware, or none with Secure Boot, for the VM
    asked for; a driver that cannot tell (libvirt's test driver) passes."""
    if wanted(req) == "bios":
        return
    caps = domcaps.domain_capabilities(hv, domain_type, MACHINE)
    if caps is None:
        return
    uefi, secure = offered(caps)
    if not uefi:
        raise HostProblem(
            "this host has no UEFI firmware for the VM ({opt:firmware} uefi)",
            cause="libvirt found no OVMF firmware descriptor for a q35 machine (/usr/share/qemu/firmware)",
            hint="install OVMF on the host (`apt-get install ovmf`) and restart libvirtd; or create the VM with "
                 "BIOS firmware", code="host.no_uefi")
    if req.secure_boot and not secure:
        raise HostProblem(
            "this host has no UEFI firmware with Secure Boot ({opt:secure_boot})",
            cause="none of the OVMF builds libvirt found (/usr/share/qemu/firmware) has Secure Boot",
            hint="install OVMF with its Secure Boot builds (Debian's `ovmf` package has OVMF_CODE_4M.ms.fd) and "
                 "restart libvirtd; or create the VM without {opt:secure_boot}", code="host.no_secure_boot")


def apply(spec: VMSpec, req: CreateRequest) -> VMSpec:
    """``spec`` with the requested firmware; a UEFI VM gets the q35 machine (Secure Boot always: it needs SMM)."""
    firmware = wanted(req)
    if firmware == "bios":
        return spec
    machine = spec.machine
    if req.secure_boot or machine is None:
        machine = MACHINE
    return spec.model_copy(update={"firmware": firmware, "secure_boot": req.secure_boot, "machine": machine})
