"""Wire types for virtual machines: the spec a VM is made from and what kvmhub reports about it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kvmhub.models.plain import Phase


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


NetworkProtocol = Literal["nfs", "iscsi", "nbd", "http", "https", "rbd", "gluster", "ssh"]


class DiskSource(_Model):
    """Where a disk's bytes live: a libvirt volume (pool + volume), a plain host path, or a network
    export reached by QEMU's own client (protocol + host + port + name, e.g. nbd://h:10809/export)."""

    pool: str | None = None
    volume: str | None = None
    path: str | None = None
    protocol: NetworkProtocol | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    name: str | None = None  # nfs: /export/file; iscsi: IQN/LUN; nbd: export name; rbd: pool/image


class IOTune(_Model):
    """A disk's ``<iotune>``: QEMU's throttle, in bytes/s and I/O operations/s; None = no limit."""

    total_bytes_sec: int | None = Field(default=None, ge=0)
    read_bytes_sec: int | None = Field(default=None, ge=0)
    write_bytes_sec: int | None = Field(default=None, ge=0)
    total_iops_sec: int | None = Field(default=None, ge=0)
    read_iops_sec: int | None = Field(default=None, ge=0)
    write_iops_sec: int | None = Field(default=None, ge=0)


class DiskSpec(_Model):
    target: str = "vda"
    bus: Literal["virtio", "scsi", "sata", "ide", "usb"] = "virtio"
    device: Literal["disk", "cdrom"] = "disk"
    format: Literal["qcow2", "raw"] = "qcow2"
    source: DiskSource = Field(default_factory=DiskSource)
    readonly: bool = False
    cache: Literal["none", "writeback", "writethrough", "unsafe", "directsync"] | None = None
    serial: str | None = None
    iotune: IOTune | None = None
    encryption_secret: str | None = None  # UUID of the libvirt secret holding a LUKS passphrase
    boot_order: int | None = Field(default=None, ge=1)  # per-device <boot order=N/>; excludes <os><boot>


class Bandwidth(_Model):
    """A NIC's ``<bandwidth>`` averages in kilobytes/s (libvirt's unit); inbound = towards the guest."""

    inbound_kbs: int | None = Field(default=None, ge=1)
    outbound_kbs: int | None = Field(default=None, ge=1)


class NICSpec(_Model):
    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    bandwidth: Bandwidth | None = None
    link: Literal["up", "down"] | None = None  # None: libvirt's default (up)
    filter: str | None = None  # libvirt nwfilter applied to the NIC (the VM's firewall)
    filter_params: dict[str, str] = Field(default_factory=dict)  # e.g. IP: the address, so none is learned


class SerialSpec(_Model):
    """The VM's ttyS0: a pty for the interactive console, mirrored to a log file."""

    log_file: str | None = None


class GraphicsSpec(_Model):
    type: Literal["vnc"] = "vnc"
    listen: str = "127.0.0.1"
    port: int = -1  # -1: libvirt picks a free port


class TPMSpec(_Model):
    """A ``<tpm>`` device: by default QEMU's CRB interface to a TPM 2.0 that libvirt emulates with swtpm, its
    state kept by libvirt per VM UUID; ``passthrough``/``external`` ones are read, never built by kvmhub."""

    model: Literal["tpm-crb", "tpm-tis", "tpm-spapr", "spapr-tpm-proxy"] = "tpm-crb"
    backend: Literal["emulator", "passthrough", "external"] = "emulator"
    version: Literal["1.2", "2.0"] | None = None  # the emulator's TPM version; None: libvirt's default (2.0)

    def text(self) -> str:
        """How `show` names it, e.g. ``TPM 2.0 (tpm-crb, emulator)``."""
        return "TPM " + (f"{self.version} " if self.version else "") + f"({self.model}, {self.backend})"


BootDevice = Literal["hd", "cdrom", "network"]
Firmware = Literal["bios", "uefi"]


def _boot_from_disk() -> list[BootDevice]:
    return ["hd"]


class BootSpec(_Model):
    """Boot order over devices, or a direct kernel boot."""

    order: list[BootDevice] = Field(default_factory=_boot_from_disk)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


class VCPUPin(_Model):
    """One ``<vcpupin>``: which host CPUs a vCPU may run on (a cpuset such as ``0-1,3``)."""

    vcpu: int = Field(ge=0)
    cpuset: str


class CPUTune(_Model):
    """``<cputune>``: CFS shares (weight), per-vCPU quota over period (cap), and pinning."""

    shares: int | None = Field(default=None, ge=0)
    period: int | None = Field(default=None, ge=0)
    quota: int | None = None  # microseconds per period for each vCPU; -1 or 0 = no cap
    vcpupin: list[VCPUPin] = Field(default_factory=list)
    emulatorpin: str | None = None


class PortForward(_Model):
    """A host port forwarded to a port of the VM (DNAT on the VM's host)."""

    host_port: int = Field(ge=1, le=65535)
    guest_port: int = Field(ge=1, le=65535)
    proto: Literal["tcp", "udp"] = "tcp"
    host_ip: str | None = None  # only this host address; None = every address of the host


class KvmhubMeta(_Model):
    """kvmhub's own facts about a VM; stored in the domain's <metadata> so they travel with it."""

    image: str | None = None
    owner: str | None = None
    project: str | None = None
    stack: str | None = None
    tags: list[str] = Field(default_factory=list)
    created: str | None = None
    owned_volumes: list[str] = Field(default_factory=list)  # "pool/volume" kvmhub made for this VM
    os: str | None = None  # libosinfo short id the VM's devices were picked for, e.g. debian11
    owned_secrets: list[str] = Field(default_factory=list)  # UUIDs of libvirt secrets made for its disks
    owned_files: list[str] = Field(default_factory=list)  # host files made for it (e.g. injected initrd)
    forwards: list[PortForward] = Field(default_factory=list)
    # the installer boot of the first start (then dropped): the installer kernel, or the CD-ROM first
    install_boot: Literal["kernel", "cdrom"] | None = None
    user: str | None = None  # the guest user the seed gave the SSH keys to (the image's default user)


class VMSpec(_Model):
    """Everything kvmhub writes into a libvirt domain definition."""

    name: str
    uuid: str | None = None
    domain_type: Literal["kvm", "qemu"] = "kvm"
    arch: str = "x86_64"
    machine: str | None = None
    vcpus: int = Field(default=1, ge=1)
    max_vcpus: int | None = Field(default=None, ge=1)  # hotplug ceiling: <vcpu current=vcpus>max</vcpu>
    memory_mib: int = Field(default=512, ge=16)  # <memory>: boot memory plus hot-plugged DIMMs
    current_memory_mib: int | None = Field(default=None, ge=1)  # balloon target; None = memory_mib
    max_memory_mib: int | None = Field(default=None, ge=16)  # DIMM hotplug ceiling: <maxMemory>
    memory_slots: int = Field(default=4, ge=1)  # DIMM slots, only written with max_memory_mib
    dimms_mib: list[int] = Field(default_factory=list)  # hot-plugged <memory model='dimm'> sizes
    cputune: CPUTune | None = None
    memory_limit_mib: int | None = Field(default=None, ge=1)  # <memtune><hard_limit>
    io_weight: int | None = Field(default=None, ge=1)  # <blkiotune><weight>
    description: str | None = None
    disks: list[DiskSpec] = Field(default_factory=list)
    nics: list[NICSpec] = Field(default_factory=list)
    serial: SerialSpec | None = Field(default_factory=SerialSpec)
    graphics: GraphicsSpec | None = None
    boot: BootSpec = Field(default_factory=BootSpec)
    guest_agent: bool = True
    tpm: TPMSpec | None = None
    firmware: Firmware = "bios"  # uefi: libvirt picks OVMF from the host's firmware descriptors
    secure_boot: bool = False  # uefi only: firmware with Secure Boot on and Microsoft's keys enrolled, SMM on
    meta: KvmhubMeta = Field(default_factory=KvmhubMeta)




class Limits(_Model):
    """Every resource limit of a VM as `kvmhub show` reports it (live values when it runs)."""

    vcpus: int
    max_vcpus: int
    memory_mib: int  # what the guest has now (balloon target)
    max_memory_mib: int  # ceiling for `set --memory` without a restart
    cpu_weight: int | None = None
    cpu_cap_percent: float | None = None  # of one host CPU, for the whole VM
    vcpu_pins: list[VCPUPin] = Field(default_factory=list)
    emulator_pin: str | None = None
    memory_limit_mib: int | None = None
    io_weight: int | None = None
    disk_io: dict[str, IOTune] = Field(default_factory=dict)  # by target
    net_bandwidth: dict[str, Bandwidth] = Field(default_factory=dict)  # by MAC


# libvirt's run state as kvmhub names it ("running" includes libvirt's "blocked")
VMState = Literal["no state", "running", "paused", "shutting down", "shut off", "crashed", "suspended", "unknown"]


class VMInfo(_Model):
    """What `kvmhub ls` and `kvmhub show` report about a VM."""

    name: str
    uuid: str
    state: VMState
    phase: Phase = Phase.DEFINED  # how far it has come; `ls` judges it from cheap signs only (serial log, lease)
    persistent: bool
    autostart: bool
    vcpus: int
    memory_mib: int
    domain_type: str
    machine: str | None = None  # e.g. pc-q35-7.2
    ips: list[str] = Field(default_factory=list)
    image: str | None = None
    os: str | None = None  # libosinfo short id the devices were picked for
    disks: list[DiskSpec] = Field(default_factory=list)
    nics: list[NICSpec] = Field(default_factory=list)
    serial_log: str | None = None
    vnc: str | None = None  # where a VNC viewer connects, e.g. 127.0.0.1:5900
    boot: str | None = None  # how an installer or kernel boot runs, when the VM has one
    managed: bool = False  # made by kvmhub (has kvmhub metadata)
    project: str = "default"  # the project its metadata names (default when none)
    limits: Limits | None = None
    user: str | None = None  # the guest user that got the SSH keys, when kvmhub knows it (`show`; not `ls`)
    tpm: TPMSpec | None = None  # its TPM device (`show`; not `ls`)
    firmware: Firmware = "bios"  # `show`; not `ls`
    secure_boot: bool = False  # UEFI Secure Boot on (`show`; not `ls`)
