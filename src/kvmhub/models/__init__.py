"""Wire types shared by the library, the CLI's JSON output and the API. Imports nothing else of kvmhub.

Each name is loaded from its module on first use, so that a command needing one model does not build them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kvmhub.models.backup import BackupRequest, RestoreRequest
    from kvmhub.models.documents import HostMedia, TextDocument
    from kvmhub.models.events import BytesEvent, NoteEvent, PhaseEvent, UndoEvent, WarningEvent
    from kvmhub.models.export import ExportDisk, ExportManifest, ExportNvram
    from kvmhub.models.host import CheckItem, CheckStatus, HostReport, HostSummary
    from kvmhub.models.image import ImageImportRequest, ImageInfo
    from kvmhub.models.network import BridgeResult, LeaseRequest, NetworkCreateRequest, NetworkMode
    from kvmhub.models.operation import (
        ACTIVE_STATES,
        OperationInfo,
        OperationState,
        Recovery,
        StepInfo,
        StepState,
    )
    from kvmhub.models.osinfo import OSInfo, OSProfile
    from kvmhub.models.project import (
        DEFAULT_PROJECT,
        MemberRequest,
        ProjectInfo,
        ProjectQuota,
        ProjectRequest,
        ProjectUse,
    )
    from kvmhub.models.requests_vm import (
        Change,
        CloneRequest,
        CloneResult,
        CloudInitRequest,
        CreateRequest,
        ExportResult,
        ImportRequest,
        LimitsRequest,
        SetRequest,
    )
    from kvmhub.models.share import ShareAddRequest, ShareChange, ShareInfo, ShareSpec
    from kvmhub.models.snapshot import SnapshotRequest
    from kvmhub.models.storage import (
        PoolInfo,
        PoolSpec,
        PoolType,
        VolumeCloneRequest,
        VolumeCreateRequest,
        VolumeFormat,
        VolumeInfo,
        VolumeResizeRequest,
    )
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
        TPMSpec,
        VCPUPin,
        VMInfo,
        VMSpec,
        VMState,
    )

# name -> the module of kvmhub.models that defines it
_WHERE: dict[str, str] = {
    "BytesEvent": "events",
    "NoteEvent": "events",
    "PhaseEvent": "events",
    "UndoEvent": "events",
    "WarningEvent": "events",
    "BackupRequest": "backup",
    "RestoreRequest": "backup",
    "HostMedia": "documents",
    "TextDocument": "documents",
    "ExportDisk": "export",
    "ExportManifest": "export",
    "ExportNvram": "export",
    "CheckItem": "host",
    "CheckStatus": "host",
    "HostReport": "host",
    "HostSummary": "host",
    "ImageImportRequest": "image",
    "ImageInfo": "image",
    "BridgeResult": "network",
    "LeaseRequest": "network",
    "NetworkCreateRequest": "network",
    "NetworkMode": "network",
    "ACTIVE_STATES": "operation",
    "OperationInfo": "operation",
    "OperationState": "operation",
    "Recovery": "operation",
    "StepInfo": "operation",
    "StepState": "operation",
    "OSInfo": "osinfo",
    "OSProfile": "osinfo",
    "DEFAULT_PROJECT": "project",
    "MemberRequest": "project",
    "ProjectInfo": "project",
    "ProjectQuota": "project",
    "ProjectRequest": "project",
    "ProjectUse": "project",
    "Change": "requests_vm",
    "CloneRequest": "requests_vm",
    "CloneResult": "requests_vm",
    "CloudInitRequest": "requests_vm",
    "CreateRequest": "requests_vm",
    "ExportResult": "requests_vm",
    "ImportRequest": "requests_vm",
    "LimitsRequest": "requests_vm",
    "SetRequest": "requests_vm",
    "ShareAddRequest": "share",
    "ShareChange": "share",
    "ShareInfo": "share",
    "ShareSpec": "share",
    "SnapshotRequest": "snapshot",
    "PoolInfo": "storage",
    "PoolSpec": "storage",
    "PoolType": "storage",
    "VolumeCloneRequest": "storage",
    "VolumeCreateRequest": "storage",
    "VolumeFormat": "storage",
    "VolumeInfo": "storage",
    "VolumeResizeRequest": "storage",
    "PHASE_ORDER": "vm",
    "Bandwidth": "vm",
    "BootSpec": "vm",
    "CPUTune": "vm",
    "DiskSource": "vm",
    "DiskSpec": "vm",
    "GraphicsSpec": "vm",
    "IOTune": "vm",
    "KvmhubMeta": "vm",
    "Limits": "vm",
    "NICSpec": "vm",
    "Phase": "vm",
    "PortForward": "vm",
    "SerialSpec": "vm",
    "TPMSpec": "vm",
    "VCPUPin": "vm",
    "VMInfo": "vm",
    "VMSpec": "vm",
    "VMState": "vm",
}

__all__ = [
    "ACTIVE_STATES",
    "DEFAULT_PROJECT",
    "PHASE_ORDER",
    "BackupRequest",
    "Bandwidth",
    "BootSpec",
    "BridgeResult",
    "BytesEvent",
    "CPUTune",
    "Change",
    "CheckItem",
    "CheckStatus",
    "CloneRequest",
    "CloneResult",
    "CloudInitRequest",
    "CreateRequest",
    "DiskSource",
    "DiskSpec",
    "ExportDisk",
    "ExportManifest",
    "ExportNvram",
    "ExportResult",
    "GraphicsSpec",
    "HostMedia",
    "HostReport",
    "HostSummary",
    "IOTune",
    "ImageImportRequest",
    "ImageInfo",
    "ImportRequest",
    "KvmhubMeta",
    "LeaseRequest",
    "Limits",
    "LimitsRequest",
    "MemberRequest",
    "NICSpec",
    "NetworkCreateRequest",
    "NetworkMode",
    "NoteEvent",
    "OSInfo",
    "OSProfile",
    "OperationInfo",
    "OperationState",
    "Phase",
    "PhaseEvent",
    "PoolInfo",
    "PoolSpec",
    "PoolType",
    "PortForward",
    "ProjectInfo",
    "ProjectQuota",
    "ProjectRequest",
    "ProjectUse",
    "Recovery",
    "RestoreRequest",
    "SerialSpec",
    "SetRequest",
    "ShareAddRequest",
    "ShareChange",
    "ShareInfo",
    "ShareSpec",
    "SnapshotRequest",
    "StepInfo",
    "StepState",
    "TPMSpec",
    "TextDocument",
    "UndoEvent",
    "VCPUPin",
    "VMInfo",
    "VMSpec",
    "VMState",
    "VolumeCloneRequest",
    "VolumeCreateRequest",
    "VolumeFormat",
    "VolumeInfo",
    "VolumeResizeRequest",
    "WarningEvent",
]


def __getattr__(name: str) -> Any:
    """Load a model on first use (PEP 562)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
