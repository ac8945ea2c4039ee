"""Character devices: the ``<serial>`` port with its ``<console>``, and the guest-agent ``<channel>``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmhub import models
from kvmhub.xml._util import Element, make, parse, sub

if TYPE_CHECKING:
    from kvmhub.models import SerialSpec

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def build_serial(serial: SerialSpec) -> list[Element]:
    """ttyS0 as a pty (for the interactive console) plus the ``<console>`` that points at it.

    With ``log_file`` set, virtlogd mirrors everything the guest prints to that file.
    """
    port = make("serial", {"type": "pty"})
    if serial.log_file is not None:
        sub(port, "log", {"file": serial.log_file, "append": "on"})
    sub(port, "target", {"port": "0"})
    console = make("console", {"type": "pty"})
    sub(console, "target", {"type": "serial", "port": "0"})
    return [port, console]


def parse_serial(devices: Element) -> SerialSpec | None:
    """The first ``<serial>`` port as a SerialSpec, or None when the domain has no serial port."""
    port = devices.find("serial")
    if port is None:
        return None
    log = port.find("log")
    # through the package, which loads the model on first use: the guest agent's callers never build it
    return models.SerialSpec(log_file=None if log is None else log.get("file"))


def build_agent_channel() -> Element:
    """The virtio-serial channel qemu-guest-agent talks over; libvirt picks the host socket path."""
    channel = make("channel", {"type": "unix"})
    sub(channel, "target", {"type": "virtio", "name": GUEST_AGENT_CHANNEL})
    return channel


def has_agent_channel(devices: Element) -> bool:
    """Whether the domain has a guest-agent channel."""
    return any(
        target.get("name") == GUEST_AGENT_CHANNEL and target.get("type") == "virtio"
        for target in devices.iterfind("channel/target")
    )


def has_console(domain_xml: str) -> bool:
    """True when the domain has a serial port or a console device a console stream can attach to."""
    devices = parse(domain_xml, "domain").find("devices")
    return devices is not None and (devices.find("serial") is not None or devices.find("console") is not None)
