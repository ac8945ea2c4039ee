"""VM verbs at the top level: create, ls, show, start, stop, kill, reboot, pause, resume, rm, set,
console, ip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from kvmhub.cli import live, output, state, through
from kvmhub.cli.commands.tune import (
    CpuCap,
    CpuWeight,
    DiskBps,
    DiskIops,
    EmulatorPin,
    IoWeight,
    MemoryLimit,
    NetBw,
    Pin,
    limit_lines,
)

if TYPE_CHECKING:
    from kvmhub.client.transport import Transport
    from kvmhub.models import Phase, TextDocument
    from kvmhub.reporting import Reporter
    from kvmhub.services.connect import Hypervisor

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def create(
    name: str,
    image: Annotated[str | None, typer.Option(help="image to clone the disk from (`kvmhub image ls`)")] = None,
    cpus: Annotated[int, typer.Option(help="vCPUs")] = 1,
    memory: Annotated[str, typer.Option(help="memory, e.g. 512M, 2G")] = "512M",
    disk: Annotated[str | None, typer.Option(help="disk size, e.g. 10G (installer VMs: OS default or 10G)")] = None,
    vol: Annotated[str | None, typer.Option(help="boot from this existing volume POOL/VOL, in place")] = None,
    disk_url: Annotated[str | None, typer.Option(help="boot from a network export (nfs, iscsi, nbd, http)")] = None,
    network: Annotated[str | None, typer.Option(help="libvirt network for the NIC")] = None,
    ip: Annotated[str | None, typer.Option(help="reserve this IPv4 address on --network")] = None,
    ssh_key: Annotated[list[Path] | None, typer.Option(help="public key file (repeatable)")] = None,
    user_data: Annotated[Path | None, typer.Option(help="cloud-init user-data file")] = None,
    no_start: Annotated[bool, typer.Option("--no-start", help="define only")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait until ready (a VM with a cloud-init seed: its keys are "
                                       "in place), else networked, else booted; --wait=PHASE picks the phase")] = False,
    wait_for: Annotated[str | None, typer.Option("--wait-for", help="wait for this phase: booted, network or ready",
                                                 metavar="PHASE")] = None,
    timeout: Annotated[float, typer.Option(help="seconds --wait may take")] = 300.0,
    max_cpus: Annotated[int | None, typer.Option("--max-cpus", help="vCPU hotplug maximum")] = None,
    max_memory: Annotated[str | None, typer.Option("--max-memory", help="memory hotplug maximum, e.g. 2G")] = None,
    cpu_weight: CpuWeight = None,
    cpu_cap: CpuCap = None,
    pin: Pin = None,
    emulator_pin: EmulatorPin = None,
    memory_limit: MemoryLimit = None,
    disk_iops: DiskIops = None,
    disk_bps: DiskBps = None,
    io_weight: IoWeight = None,
    net_bw: NetBw = None,
    os_variant: Annotated[str | None, typer.Option("--os", help="OS variant (`kvmhub os ls`), picks devices")] = None,
    encrypt: Annotated[bool, typer.Option("--encrypt", help="LUKS-encrypt the disk (key in a libvirt secret)")] = False,
    password_file: Annotated[Path | None, typer.Option(
        help="file whose first line is the password of the image's default user (the tiny appliance: root),"
        " stored hashed; - reads standard input")] = None,
    password: Annotated[str | None, typer.Option(
        help="the password itself: visible to other users of this host (ps); prefer --password-file")] = None,
    packages: Annotated[list[str] | None, typer.Option("--packages", help="packages to install: a,b")] = None,
    runcmd: Annotated[list[str] | None, typer.Option("--runcmd", help="first-boot command (repeatable)")] = None,
    network_config: Annotated[Path | None, typer.Option(help="cloud-init network-config file (v2)")] = None,
    vendor_data: Annotated[Path | None, typer.Option(help="cloud-init vendor-data file")] = None,
    iso: Annotated[Path | None, typer.Option(help="installer ISO: attached as CD-ROM and booted, with VNC")] = None,
    location: Annotated[Path | None, typer.Option(help="installer ISO or tree for --kickstart/--preseed")] = None,
    kickstart: Annotated[Path | None, typer.Option(help="kickstart file injected into the installer initrd")] = None,
    preseed: Annotated[Path | None, typer.Option(help="preseed file injected into the installer initrd")] = None,
    extra_args: Annotated[str | None, typer.Option(help="more installer kernel arguments")] = None,
    kernel: Annotated[Path | None, typer.Option(help="direct kernel boot: kernel file")] = None,
    initrd: Annotated[Path | None, typer.Option(help="direct kernel boot: initrd file")] = None,
    cmdline: Annotated[str | None, typer.Option(help="direct kernel boot: kernel command line")] = None,
    vnc: Annotated[bool | None, typer.Option("--vnc/--no-vnc", help="VNC display (default: installer VMs)")] = None,
    vnc_port: Annotated[int | None, typer.Option(help="VNC port (default: the next free one)")] = None,
    vnc_listen: Annotated[str, typer.Option(help="address VNC listens on")] = "127.0.0.1",
    project: Annotated[str | None, typer.Option(help="the VM's project (default: yours if one, else default)")] = None,
    share: Annotated[list[str] | None, typer.Option(
        "--share", help="HOSTDIR[:TAG]: share a host directory (virtiofs), mounted at /mnt/TAG (repeatable)")] = None,
    tpm: Annotated[bool, typer.Option("--tpm", help="an emulated TPM 2.0 (swtpm; state kept with the VM)")] = False,
    firmware: Annotated[str | None, typer.Option(
        "--firmware", help="bios (default) or uefi (OVMF, picked by libvirt)")] = None,
    secure_boot: Annotated[bool, typer.Option(
        "--secure-boot", help="UEFI with Secure Boot on and Microsoft's keys enrolled (implies uefi)")] = False,
    template: Annotated[str | None, typer.Option(
        help="restore the VM from a warm template's saved memory instead of booting (`kvmhub template ls`)")] = None,
) -> None:
    """Create a VM from an image (linked-clone disk, cloud-init seed), an installer ISO, or a kernel."""
    from kvmhub.cli.commands.share import from_option
    from kvmhub.models import CreateRequest, HostMedia, LimitsRequest, Phase
    from kvmhub.services.vm.cloudinit import password_option, read_document

    target = _wait_phase(wait_for)
    wait = wait or target is not None

    def media(path: Path | None) -> HostMedia | None:
        return HostMedia(path=str(path)) if path is not None else None

    limits = LimitsRequest(
        cpu_weight=cpu_weight, cpu_cap=cpu_cap, pins=pin or [], emulator_pin=emulator_pin,
        memory_limit=memory_limit, disk_iops=disk_iops or [], disk_bps=disk_bps or [], io_weight=io_weight,
        net_bw=net_bw or [],
    )
    req = CreateRequest(
        name=name, image=image, cpus=cpus, memory=memory, disk=disk, vol=vol, disk_url=disk_url, network=network, ip=ip,
        ssh_keys=[read_document(p, "SSH key") for p in ssh_key or []],
        user_data=read_document(user_data, "user-data") if user_data is not None else None,
        start=not no_start, max_cpus=max_cpus, max_memory=max_memory, limits=limits, os=os_variant, encrypt=encrypt,
        password=password_option(password, password_file, output.say),
        packages=[p for arg in packages or [] for p in arg.split(",") if p], runcmd=runcmd or [],
        network_config=read_document(network_config, "network-config") if network_config is not None else None,
        vendor_data=read_document(vendor_data, "vendor-data") if vendor_data is not None else None,
        iso=media(iso), location=media(location),
        kickstart=_answer(kickstart, "kickstart"), preseed=_answer(preseed, "preseed"),
        extra_args=extra_args, kernel=media(kernel), initrd=media(initrd),
        cmdline=cmdline, vnc=vnc, vnc_port=vnc_port, vnc_listen=vnc_listen, project=project,
        access_key=_access_key(),
        shares=[from_option(s) for s in share or []], tpm=tpm, template=template,
        firmware=_firmware_option(firmware), secure_boot=secure_boot,
    )
    if template is not None:
        from kvmhub.services.templates import warm  # restored, not booted: none of create's imports

        make = warm.create
        target = target or Phase.READY
    else:
        from kvmhub.services.vm import create as vm_create

        make = vm_create.create
        if target is None and vm_create.wants_seed(req):
            target = Phase.READY  # its keys are in place then
    with live.report(f"create {name}") as report:
        if (server := state.remote()) is not None:
            through.operation(server, "POST", "/vms", report, req.model_dump(mode="json", exclude_none=True))
            if wait and not no_start:
                _remote_wait(server, name, target, timeout, report)
                report.phase("done")
        else:
            hv = state.hv()
            make(hv, req, report=report)
            if wait and not no_start and template is None:  # a warm create returns with its guest ready
                from kvmhub.services.vm import lifecycle as vms

                _wait(hv, name, target or vms.default_wait_target(hv, name), timeout, report)
                report.phase("done")
    output.say(f"VM {name} created" + ("" if no_start else " and started"))


def _answer(path: Path | None, what: Literal["kickstart", "preseed"]) -> TextDocument | None:
    """An installer answer file (--kickstart, --preseed) read for the request."""
    if path is None:
        return None
    from kvmhub.services.vm.installer import read_answer_document

    return read_answer_document(path, what)


def _wait_phase(text: str | None) -> Phase | None:
    """The phase --wait=PHASE (--wait-for) names; refuses the others."""
    from kvmhub.errors import InvalidInput
    from kvmhub.models import Phase

    if text is None:
        return None
    allowed = ("booted", "network", "ready")
    if text not in allowed:
        raise InvalidInput(f"{{opt:wait}}={text}: no such phase to wait for", hint=f"one of {', '.join(allowed)}")
    return Phase(text)


def _firmware_option(text: str | None) -> Literal["bios", "uefi"] | None:
    """The firmware --firmware names; refuses the others."""
    from kvmhub.errors import InvalidInput

    if text == "bios":
        return "bios"
    if text == "uefi":
        return "uefi"
    if text is None:
        return None
    raise InvalidInput(f"{{opt:firmware}} {text}: no such firmware", hint="bios or uefi")


def _access_key() -> str | None:
    """kvmhub's public key for the seed (`kvmhub ssh` logs in with it); a warning instead when it cannot be made."""
    from kvmhub.errors import KvmhubError
    from kvmhub.services.vm import ssh

    try:
        return ssh.public_key()
    except KvmhubError as exc:
        output.say(f"warning: {exc.message}: `kvmhub ssh` will need a key of yours (--identity)")
        return None


def wait_spelling(args: list[str]) -> list[str]:
    """``--wait=PHASE`` as ``--wait-for=PHASE`` (a bare ``--wait`` stays a flag); words after ``--`` untouched."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith("--wait="):
            args = [*args[:i], "--wait-for=" + arg.removeprefix("--wait="), *args[i + 1:]]
    return args


def _remote_action(server: Transport, name: str, action: str, report: Reporter,
                   body: dict[str, object] | None = None) -> dict[str, Any]:
    """A state change through the server; the VM as it is after."""
    from kvmhub.validate import check_name

    check_name(name, "VM")
    after = through.operation(server, "POST", through.path("vms", name, action), report, body)
    return after if isinstance(after, dict) else {}


def _remote_wait(server: Transport, name: str, target: Phase | None, timeout: float, report: Reporter) -> None:
    body = {"timeout": timeout, **({"phase": target.value} if target is not None else {})}
    through.operation(server, "POST", through.path("vms", name, "wait"), report, body)


def _wait(hv: Hypervisor, name: str, target: Phase, timeout: float, report: Reporter) -> None:
    from kvmhub.services.vm import lifecycle as vms

    vms.wait(hv, name, target, timeout, report=report)


def ls(json_out: JsonOpt = False) -> None:
    """List VMs (also those made with virsh)."""
    if (server := state.remote()) is not None:
        from kvmhub.models import VMInfo

        found = [VMInfo.model_validate(v) for v in through.get(server, "vms")]
    else:
        from kvmhub.services.vm import lifecycle as vms

        found = vms.list_vms(state.hv())
    if json_out:
        output.print_json(found)
        return
    from kvmhub.cli.vm_rows import ls_table

    output.table(*ls_table([v.model_dump() for v in found]))


def show(name: str, json_out: JsonOpt = False) -> None:
    """Show one VM: state, resources, disks, NICs, IPs, console log, VNC."""
    from kvmhub.services.storage.disks import source_text
    from kvmhub.services.vm import lifecycle as vms
    from kvmhub.validate import check_name

    if (server := state.remote()) is not None:
        from kvmhub.models import VMInfo

        check_name(name, "VM")
        info = VMInfo.model_validate(through.get(server, "vms", name))
    else:
        info = vms.show(state.hv(), name)
    if json_out:
        output.print_json(info)
        return
    data = info.model_dump()
    data["disks"] = [
        f"{d.target} {d.device} {d.bus} {source_text(d.source)}"
        + (" ro" if d.readonly else "") + (" encrypted" if d.encryption_secret else "")
        for d in info.disks
    ]
    data["nics"] = [f"{n.network or n.bridge} {n.mac or ''} {n.model}" for n in info.nics]
    data.pop("limits", None)
    data["tpm"] = info.tpm.text() if info.tpm is not None else None
    data["firmware"] = info.firmware + (" (Secure Boot)" if info.secure_boot else "")
    data.pop("secure_boot")
    for key, value in data.items():
        output.field(key, value)
    if info.limits is not None:
        output.field("limits", limit_lines(info.limits))


def start(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="wait until booted (and networked)")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait may take")] = 300.0,
) -> None:
    """Start a VM."""
    from kvmhub.services.vm import lifecycle as vms

    with live.report(f"start {name}") as report:
        if (server := state.remote()) is not None:
            _remote_action(server, name, "start", report)
            if wait:
                _remote_wait(server, name, None, timeout, report)
        else:
            hv = state.hv()
            vms.start(hv, name, report=report)
            if wait:
                _wait(hv, name, vms.default_wait_target(hv, name), timeout, report)
    output.say(f"VM {name} started")


def stop(
    name: str,
    force: Annotated[bool, typer.Option("--force", help="kill it if it has not stopped after --timeout")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the guest to power off")] = 60.0,
) -> None:
    """Shut a VM down gracefully (ACPI power button)."""
    from kvmhub.services.vm import lifecycle as vms
    from kvmhub.validate import check_name

    with live.report(f"stop {name}") as report:
        report.phase("power button pressed, waiting for the guest")
        if (server := state.remote()) is not None:
            check_name(name, "VM")
            done = through.finished(server, "POST", through.path("vms", name, "stop"), report,
                                    {"force": force, "timeout": timeout})
            how = done.phase if done.phase in ("shut down", "killed") else "shut down"
        else:
            how = vms.stop(state.hv(), name, force=force, timeout=timeout, report=report)
    output.say(f"VM {name} {how}")


def _simple(verb: str, doc: str) -> Callable[[str], None]:
    def command(name: str) -> None:
        if (server := state.remote()) is not None:
            _remote_action(server, name, verb, live.lines())
        else:
            from kvmhub.services.vm import lifecycle as vms

            getattr(vms, verb)(state.hv(), name)
        past = {"kill": "killed", "reboot": "rebooting", "pause": "paused", "resume": "resumed"}[verb]
        output.say(f"VM {name} {past}")

    command.__doc__ = doc
    command.__name__ = verb
    return command


def rm(
    name: str,
    keep_disks: Annotated[bool, typer.Option("--keep-disks", help="keep the VM's disk and seed volumes")] = False,
) -> None:
    """Remove a VM: kill it if running, undefine it, delete its disk and seed (never the image)."""
    if (server := state.remote()) is not None:
        from kvmhub.validate import check_name

        check_name(name, "VM")
        route = through.path("vms", name) + f"?keep_disks={str(keep_disks).lower()}"
        removed = through.operation(server, "DELETE", route, live.lines())
    else:
        from kvmhub.services.vm import remove as vm_remove

        removed = vm_remove.remove(state.hv(), name, keep_disks=keep_disks, report=live.lines())
    output.say(f"VM {name} removed" + (f" with {', '.join(removed)}" if removed else ""))


def console(
    name: str,
    log: Annotated[bool, typer.Option("--log", help="print the serial log instead of attaching")] = False,
) -> None:
    """Attach to a VM's serial console (Ctrl-] leaves), or print its serial log."""
    import sys

    if (server := state.remote()) is not None:
        from kvmhub.validate import check_name

        check_name(name, "VM")
        if log:
            sys.stdout.write(through.get(server, "vms", name, "console", "log")["text"])
            return
        from kvmhub.client import console as remote_console
        from kvmhub.client.websocket import open_websocket

        remote_console.attach(open_websocket(server, through.path("vms", name, "console")), name)
        return
    from kvmhub.services.vm import console as svc

    if log:
        sys.stdout.write(svc.log(state.hv(), name))
        return
    svc.interactive(state.hv(), name)


def ip(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the VM has an IP")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait may take")] = 300.0,
    json_out: JsonOpt = False,
) -> None:
    """Print a VM's IP addresses (DHCP lease, then guest agent, then ARP)."""
    if (server := state.remote()) is not None:
        from kvmhub.models import Phase
        from kvmhub.models.nic import IPAddress
        from kvmhub.validate import check_name

        check_name(name, "VM")
        if wait:
            _remote_wait(server, name, Phase.NETWORK, timeout, live.lines())
        found = [IPAddress.model_validate(a) for a in through.get(server, "vms", name, "ip")]
    else:
        from kvmhub.services.vm import lifecycle as vms

        found = vms.ip_addresses(state.hv(), name, wait_timeout=timeout if wait else None, report=live.lines())
    if json_out:
        output.print_json([{"ip": a.ip, "prefix": a.prefix, "mac": a.mac, "iface": a.iface,
                            "source": a.source} for a in found])
        return
    if not found:
        from kvmhub.errors import NotFound

        raise NotFound(f"VM {name} has no IP yet", hint=f"{{cmd:ip {name} --wait}}")
    for a in found:
        output.out.print(a.ip, markup=False)
    output.say(f"(from {found[0].source})")


def register(app: typer.Typer) -> None:
    app.command()(create)
    app.command("ls")(ls)
    app.command()(show)
    app.command()(start)
    app.command()(stop)
    for verb, doc in (
        ("kill", "Stop a VM at once (power cut)."),
        ("reboot", "Reboot a VM (ACPI)."),
        ("pause", "Pause a VM's vCPUs."),
        ("resume", "Resume a paused VM."),
    ):
        app.command(verb)(_simple(verb, doc))
    app.command()(rm)
    app.command()(console)
    app.command()(ip)
