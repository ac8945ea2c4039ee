"""The emulated TPM of `create --tpm`: whether the host can give one."""

from __future__ import annotations

from kvmhub.errors import HostProblem
from kvmhub.hv import domcaps
from kvmhub.hv.connection import Hypervisor
from kvmhub.models import TPMSpec
from kvmhub.xml.tpm import emulator_offered

# TPM 2.0 on QEMU's CRB interface: what Windows 11 asks for, and what Linux's tpm_crb driver binds to
DEFAULT_TPM = TPMSpec(model="tpm-crb", backend="emulator", version="2.0")


def check_host(hv: Hypervisor, domain_type: str) -> None:
    """Raise HostProblem when the host's libvirt offers no emulated TPM 2.0 for ``domain_type`` VMs (swtpm
    missing); a driver that cannot tell (libvirt's test driver) passes."""
    caps = domcaps.domain_capabilities(hv, domain_type)
    if caps is None or emulator_offered(caps):
        return
    raise HostProblem(
        "this host cannot give the VM an emulated TPM 2.0 ({opt:tpm})",
        cause="libvirt found no swtpm on the host, or its QEMU lacks the TPM devices",
        hint="install swtpm and swtpm-tools on the host (`apt-get install swtpm swtpm-tools`) and restart "
             "libvirtd; or create the VM without {opt:tpm}",
    )
