"""`kvmhub host devices` and `kvmhub device attach|detach`: the host's PCI, USB and mediated devices, given to VMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kvmhub.cli import live as live_view
from kvmhub.cli import output, state, through

if TYPE_CHECKING:
    from kvmhub.models.device import DeviceChange, HostDevice

app = typer.Typer(help="Give a VM a device of its host (PCI through VFIO, USB, mediated devices).",
                  no_args_is_help=True)
DeviceArg = Annotated[str, typer.Argument(
    metavar="PCI-ADDR|VENDOR:PRODUCT", help="a PCI address (0000:01:00.0), a USB or PCI vendor:product id "
                                            "(046d:c52b), or a mediated device's UUID (`kvmhub host devices`)")]


def _name(dev: HostDevice) -> str:
    return " ".join(x for x in (dev.vendor or dev.vendor_id, dev.product or dev.product_id) if x)


def _group(dev: HostDevice) -> str:
    if dev.iommu_group is None:
        return "-" if dev.kind == "usb" else "none"
    return f"{dev.iommu_group}" + ("" if dev.group_viable in (True, None) else " (not viable)")


def host_devices(json_out: Annotated[bool, typer.Option("--json", help="print the devices as JSON")] = False) -> None:
    """List the host's PCI, USB and mediated devices: driver, IOMMU group, which VM has each, what the host uses."""
    if (server := state.remote()) is not None:
        from kvmhub.models.device import HostDevice

        found = [HostDevice.model_validate(d) for d in through.get(server, "hosts", "local", "devices")]
    else:
        from kvmhub.services.host import devices

        found = devices.list_devices(state.hv())
    if json_out:
        output.print_json(found)
        return
    output.table(["KIND", "ID", "DEVICE", "CLASS", "DRIVER", "IOMMU", "VM", "HOST USE"],
                 [(d.kind, d.id, _name(d), d.device_class or "", d.driver or "", _group(d), d.vm or "",
                   d.host_use or "") for d in found])
    if any(d.kind == "pci" for d in found) and all(d.iommu_group is None for d in found if d.kind == "pci"):
        output.say("no IOMMU groups: the host's IOMMU is off, so PCI devices cannot be given to VMs "
                   "(intel_iommu=on or amd_iommu=on on the kernel command line)")


def _done(vm: str, change: DeviceChange, verb: str) -> None:
    when = "live" if change.live else "takes effect at the next start"
    output.say(f"{vm}: {change.device.kind.upper()} device {change.device.id} {verb} ({when})")


@app.command("attach")
def attach(vm: str, device: DeviceArg) -> None:
    """Give a host device to a VM (managed VFIO for PCI): live when it runs, always persisted."""
    from kvmhub.services.host import devices

    device = devices.check_device_id(device)
    if (server := state.remote()) is not None:
        from kvmhub.models.device import DeviceChange
        from kvmhub.validate import check_name

        check_name(vm, "VM")
        change = DeviceChange.model_validate(through.operation(
            server, "POST", through.path("vms", vm, "devices"), live_view.lines(), {"device": device}))
    else:
        from kvmhub.services.host import passthrough

        change = passthrough.attach(state.hv(), vm, device)
    _done(vm, change, "attached")


@app.command("detach")
def detach(vm: str, device: DeviceArg) -> None:
    """Take a host device back from a VM (given back to its host driver): live when it runs, always persisted."""
    from kvmhub.services.host import devices

    device = devices.check_device_id(device)
    if (server := state.remote()) is not None:
        from kvmhub.models.device import DeviceChange
        from kvmhub.validate import check_name

        check_name(vm, "VM")
        change = DeviceChange.model_validate(through.operation(
            server, "DELETE", through.path("vms", vm, "devices", device), live_view.lines()))
    else:
        from kvmhub.services.host import passthrough

        change = passthrough.detach(state.hv(), vm, device)
    _done(vm, change, "detached")
