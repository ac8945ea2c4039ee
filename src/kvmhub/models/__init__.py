"""Wire types shared by the library, the CLI's JSON output and the API. Imports nothing else of kvmhub."""

from kvmhub.models.host import CheckItem, CheckStatus, HostReport
from kvmhub.models.image import ImageInfo
from kvmhub.models.operation import (
    ACTIVE_STATES,
    OperationInfo,
    OperationState,
    Recovery,
    StepInfo,
    StepState,
)
from kvmhub.models.osinfo import OSInfo, OSProfile
from kvmhub.models.storage import PoolInfo, PoolSpec, PoolType, VolumeInfo
from kvmhub.models.vm import (
    PHASE_ORDER,
    Bandwidth,
    BootSpec,
    CPUTune,
    DiskSource,
    DiskSpec,
    GraphicsSpec,
    IOTune,
    KvmhubMeta,
    Limits,
    NICSpec,
    Phase,
    PortForward,
    SerialSpec,
    VCPUPin,
    VMInfo,
    VMSpec,
)

__all__ = [
    "ACTIVE_STATES",
    "PHASE_ORDER",
    "Bandwidth",
    "BootSpec",
    "CPUTune",
    "CheckItem",
    "CheckStatus",
    "DiskSource",
    "DiskSpec",
    "GraphicsSpec",
    "HostReport",
    "IOTune",
    "ImageInfo",
    "KvmhubMeta",
    "Limits",
    "NICSpec",
    "OSInfo",
    "OSProfile",
    "OperationInfo",
    "OperationState",
    "Phase",
    "PoolInfo",
    "PoolSpec",
    "PoolType",
    "PortForward",
    "Recovery",
    "SerialSpec",
    "StepInfo",
    "StepState",
    "VCPUPin",
    "VMInfo",
    "VMSpec",
    "VolumeInfo",
]
