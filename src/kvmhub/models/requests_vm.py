"""Wire types for the VM verbs: what create, set, clone and import take and what clone and export return.

Fields keep the user's own notation (sizes like ``2G``, pins like ``0:1-2``): the services parse and check
them, so a refusal names the option as the user gave it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models.documents import HostMedia, TextDocument
from kvmhub.models.export import ExportManifest
from kvmhub.models.share import ShareAddRequest


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsRequest(_Model):
    """Limits as the user typed them; shared by `create` and `set`."""

    cpu_weight: int | None = None
    cpu_cap: float | None = None  # percent of one host CPU for the whole VM; 0 = no cap
    pins: list[str] = Field(default_factory=list)  # VCPU:CPUSET
    emulator_pin: str | None = None
    memory_limit: str | None = None  # size or "none"
    disk_iops: list[str] = Field(default_factory=list)  # [DISK:]N | [DISK:]read=N,write=N
    disk_bps: list[str] = Field(default_factory=list)  # [DISK:]SIZE | [DISK:]read=SIZE,write=SIZE
    io_weight: int | None = None
    net_bw: list[str] = Field(default_factory=list)  # [NIC:]IN/OUT, NIC = MAC or index


class SetRequest(LimitsRequest):
    """What `kvmhub set` may change."""

    cpus: int | None = None
    max_cpus: int | None = None
    memory: str | None = None
    autostart: bool | None = None


class Change(_Model):
    """One applied setting and when it takes effect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setting: str
    value: str
    live: bool
    note: str = ""

    def line(self) -> str:
        """The setting as `set` prints it: value, and live or after a restart."""
        when = "applied live" if self.live else "takes effect after restart"
        return f"{self.setting} {self.value}: {when}" + (f" ({self.note})" if self.note else "")


class CloudInitRequest(_Model):
    """What goes into a VM's seed: its identity, the user's documents and create's cloud-init options."""

    hostname: str
    instance_id: str
    user_data: TextDocument | None = None
    ssh_keys: list[TextDocument] = Field(default_factory=list)  # each may hold several keys, one a line
    password: str | None = None  # stored hashed in the seed
    packages: list[str] = Field(default_factory=list)
    runcmd: list[str] = Field(default_factory=list)
    network_config: TextDocument | None = None
    vendor_data: TextDocument | None = None
    access_key: str | None = None  # kvmhub's own public key, added when the user-data is #cloud-config or none


class CreateRequest(_Model):
    """A new VM: from an image, an existing volume, a network export, an installer or a kernel."""

    name: str
    image: str | None = None  # None: an installer or kernel-boot VM with an empty disk
    cpus: int = 1
    memory: str = "512M"
    disk: str | None = None
    vol: str | None = None  # boot from this existing volume POOL/VOL, in place (not cloned, not owned)
    disk_url: str | None = None  # boot from this network export (nfs://, iscsi://, nbd://, http(s)://)
    network: str | None = None
    ip: str | None = None  # reserved on `network`; picked from its DHCP range when None
    ssh_keys: list[TextDocument] = Field(default_factory=list)
    user_data: TextDocument | None = None
    start: bool = True
    max_cpus: int | None = None
    max_memory: str | None = None
    limits: LimitsRequest = Field(default_factory=LimitsRequest)
    os: str | None = None  # libosinfo short id; picks buses, NIC model, machine, minimum sizes
    encrypt: bool = False  # the VM's disk is a LUKS qcow2, its key in a libvirt secret
    # cloud-init beyond user-data and keys
    password: str | None = None  # stored hashed in the seed
    packages: list[str] = Field(default_factory=list)
    runcmd: list[str] = Field(default_factory=list)
    network_config: TextDocument | None = None
    vendor_data: TextDocument | None = None
    access_key: str | None = None  # a public key the CLI adds for `kvmhub ssh` (kept apart from ssh_keys)
    # installer path and direct kernel boot
    iso: HostMedia | None = None  # attached as CD-ROM and booted
    location: HostMedia | None = None  # installer ISO or tree the kernel/initrd come from (unattended)
    kickstart: TextDocument | None = None
    preseed: TextDocument | None = None
    extra_args: str | None = None  # appended to the installer's kernel command line
    kernel: HostMedia | None = None
    initrd: HostMedia | None = None
    cmdline: str | None = None
    vnc: bool | None = None  # None: a VNC display for installer VMs only
    vnc_port: int | None = None
    vnc_listen: str = "127.0.0.1"
    project: str | None = None  # the owning project; None: the caller's only project, else default
    shares: list[ShareAddRequest] = Field(default_factory=list)  # host directories, mounted at first boot
    tpm: bool = False  # an emulated TPM 2.0 (swtpm), its state kept by libvirt with the VM
    firmware: Literal["bios", "uefi"] | None = None  # None: bios, or uefi with secure_boot
    secure_boot: bool = False  # UEFI with Secure Boot on and Microsoft's keys enrolled (implies uefi)
    template: str | None = None  # a warm template: restored from its saved memory instead of booted


class CloneTarget(_Model):
    """The copy a clone makes, its source given elsewhere (the API's ``POST /vms/{name}/clone``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    linked: bool = False
    start: bool = False
    network: str | None = None  # every NIC of the clone on this network instead
    project: str | None = None  # the clone's project; None: the caller's only project, else default


class CloneRequest(CloneTarget):
    """A copy of a shut-off VM under a new name."""

    source: str


class CloneResult(_Model):
    """What `clone` made."""

    name: str
    linked: bool
    volumes: list[str] = Field(default_factory=list)  # pool/volume of the clone's disks, kernel and initrd
    backing: dict[str, str] = Field(default_factory=dict)  # target -> path its overlay is backed by
    frozen: list[str] = Field(default_factory=list)  # bases made from the source's disks
    ips: list[str] = Field(default_factory=list)
    duration_s: float = 0.0


class ImportRequest(_Model):
    """A VM defined from an export archive on the kvmhub host (``media``), its disks uploaded into ``pool``."""

    media: HostMedia
    as_name: str | None = None  # import as a copy: this name, a new UUID and new MACs
    pool: str | None = None  # default: the disks pool
    network: str | None = None  # every NIC on this network
    project: str | None = None  # the owning project; None: the caller's only project, else default


class ExportRequest(_Model):
    """How `export` writes the archive (the API picks its file on the server host and names it in the result)."""

    compress: bool = False  # qcow2 disks with compressed clusters


class ExportResult(_Model):
    """What `export` made: the archive and its manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Path
    bytes: int
    manifest: ExportManifest
    duration_s: float
