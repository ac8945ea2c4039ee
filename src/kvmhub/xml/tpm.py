"""``<tpm>``: a VM's Trusted Platform Module, by default a TPM 2.0 that libvirt emulates with swtpm."""

from __future__ import annotations

from kvmhub.models import TPMSpec
from kvmhub.xml._util import Element, choices, make, parse, sub

_MODELS = choices(TPMSpec, "model")
_BACKENDS = choices(TPMSpec, "backend")
_VERSIONS = choices(TPMSpec, "version")


def build_tpm(tpm: TPMSpec) -> Element:
    """``<tpm model=...><backend type=... version=.../></tpm>``; libvirt starts swtpm for an emulator backend and
    keeps its state under ``/var/lib/libvirt/swtpm/<VM UUID>/``."""
    el = make("tpm", {"model": tpm.model})
    sub(el, "backend", {"type": tpm.backend, "version": tpm.version})
    return el


def parse_tpm(devices: Element) -> TPMSpec | None:
    """The first ``<tpm>`` as a TPMSpec; None when there is none or it is of a kind kvmhub does not model."""
    el = devices.find("tpm")
    if el is None:
        return None
    backend = el.find("backend")
    kind = backend.get("type") if backend is not None else None
    model = el.get("model", "tpm-tis")  # libvirt's default model when the attribute is absent
    if model not in _MODELS or kind not in _BACKENDS:
        return None
    version = backend.get("version") if backend is not None else None
    return TPMSpec.model_validate({
        "model": model,
        "backend": kind,
        "version": version if version in _VERSIONS else None,
    })


def emulator_offered(domcaps_xml: str) -> bool:
    """Whether ``<domainCapabilities>`` offers an emulated TPM 2.0: libvirt lists the ``emulator`` backend only
    when it finds swtpm on the host."""
    tpm = parse(domcaps_xml, "domain capabilities").find("devices/tpm")
    if tpm is None or tpm.get("supported") != "yes":
        return False
    backends = {v.text for v in tpm.iterfind("enum[@name='backendModel']/value")}
    versions = {v.text for v in tpm.iterfind("enum[@name='backendVersion']/value")}
    # libvirt before 8.6 lists no versions; it then offers whatever the swtpm it found supports
    return "emulator" in backends and (not versions or "2.0" in versions)
