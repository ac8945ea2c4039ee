"""kvmhub: create, run and manage KVM/QEMU virtual machines through libvirt.

The library face: open a host with :class:`Hypervisor`, then use the service modules
(:mod:`kvmhub.services.vm.lifecycle`, ``storage.images``, ``network.networks``, ``host.checks``).
Errors are :class:`KvmhubError`s.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: `kvmhub ls` through a server loads nothing it does not use, typing included

if TYPE_CHECKING:
    from typing import Any

    from kvmhub.errors import (
        Conflict,
        HostProblem,
        InvalidInput,
        KvmhubError,
        NotFound,
        OperationFailed,
        OperationTimeout,
    )
    from kvmhub.hv import Hypervisor
    from kvmhub.models import DiskSpec, ImageInfo, NICSpec, Phase, VMInfo, VMSpec

# Loaded on first use: the CLI's short commands should not pay for libvirt and pydantic they don't use.
_LAZY = {"Hypervisor": "kvmhub.hv", **dict.fromkeys(
    ("DiskSpec", "ImageInfo", "NICSpec", "Phase", "VMInfo", "VMSpec"), "kvmhub.models"), **dict.fromkeys(
    ("Conflict", "HostProblem", "InvalidInput", "KvmhubError", "NotFound", "OperationFailed", "OperationTimeout"),
    "kvmhub.errors")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(__import__(_LAZY[name], fromlist=[name]), name)  # not importlib: 1 ms of `kvmhub ls`
    raise AttributeError(f"module 'kvmhub' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "DiskSpec",
    "HostProblem",
    "Hypervisor",
    "ImageInfo",
    "InvalidInput",
    "KvmhubError",
    "NICSpec",
    "NotFound",
    "OperationFailed",
    "OperationTimeout",
    "Phase",
    "VMInfo",
    "VMSpec",
    "__version__",
]
