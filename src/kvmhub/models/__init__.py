"""Wire types shared by the library, the CLI's JSON output and the API. Imports nothing else of kvmhub."""

from kvmhub.models.host import CheckItem, CheckStatus, HostReport
from kvmhub.models.image import ImageInfo
from kvmhub.models.vm import (
    PHASE_ORDER,
    BootSpec,
    DiskSource,
    DiskSpec,
    GraphicsSpec,
    KvmhubMeta,
    NICSpec,
    Phase,
    SerialSpec,
    VMInfo,
    VMSpec,
)

__all__ = [
    "PHASE_ORDER",
    "BootSpec",
    "CheckItem",
    "CheckStatus",
    "DiskSource",
    "DiskSpec",
    "GraphicsSpec",
    "HostReport",
    "ImageInfo",
    "KvmhubMeta",
    "NICSpec",
    "Phase",
    "SerialSpec",
    "VMInfo",
    "VMSpec",
]
