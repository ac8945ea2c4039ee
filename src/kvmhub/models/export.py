"""Wire types for export archives: the manifest an archive holds (written by export, checked by import)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NVRAM_MAX_BYTES = 64 * 1024**2  # an NVRAM file larger than this is no firmware variable store
TPM_FILE_MAX_BYTES = 4 * 1024**2  # swtpm's TPM 2.0 state file (tpm2-00.permall) is tens of KiB
TPM_MAX_FILES = 16


class ExportDisk(BaseModel):
    """One disk in an export archive."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(pattern=r"^[a-z]{1,4}[a-z0-9]{1,8}$")
    file: str = Field(pattern=r"^disk-[a-z0-9]{2,12}\.(qcow2|raw)$")
    format: Literal["qcow2", "raw"]
    bytes: int = Field(ge=0)
    capacity: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    volume: str | None = None  # its volume name on the exporting host


class ExportNvram(BaseModel):
    """The NVRAM file in an export archive."""

    model_config = ConfigDict(extra="forbid")

    file: Literal["nvram.fd"] = "nvram.fd"
    bytes: int = Field(ge=0, le=NVRAM_MAX_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ExportTpmFile(BaseModel):
    """One file of an emulated TPM's swtpm state, by its path inside the VM's state directory; it is the archive
    member ``tpm/<name>``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^([a-z0-9]{1,16}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    bytes: int = Field(ge=0, le=TPM_FILE_MAX_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def member(self) -> str:
        """Its name in the archive."""
        return f"tpm/{self.name}"


class ExportTpm(BaseModel):
    """The swtpm state of the VM's emulated TPM in an export archive (its keys and sealed secrets)."""

    model_config = ConfigDict(extra="forbid")

    files: list[ExportTpmFile] = Field(min_length=1, max_length=TPM_MAX_FILES)


class ExportManifest(BaseModel):
    """``kvmhub-export.json``: what an export archive holds."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kvmhub-export"] = "kvmhub-export"
    version: Literal[1] = 1
    vm: str
    uuid: str
    created: str
    flattened: bool = True
    domain_xml: str
    disks: list[ExportDisk]
    nvram: ExportNvram | None = None
    tpm: ExportTpm | None = None  # after the NVRAM, in this order
