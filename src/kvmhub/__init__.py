"""kvmhub: create, run and manage KVM/QEMU virtual machines through libvirt.

The library face: open a host with :class:`Hypervisor`, then use the service modules
(:mod:`kvmhub.services.vms`, ``images``, ``networks``, ``host``). Errors are :class:`KvmhubError`s.
"""

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
