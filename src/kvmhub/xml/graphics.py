"""``<graphics>``: the VM's VNC display."""

from __future__ import annotations

from kvmhub.models import GraphicsSpec
from kvmhub.xml._util import Element, make, parse, sub, to_int


def build_graphics(graphics: GraphicsSpec) -> Element:
    """The ``<graphics>`` element; port -1 lets libvirt pick a free port (autoport)."""
    auto = graphics.port == -1
    el = make(
        "graphics",
        {
            "type": graphics.type,
            "port": str(graphics.port),
            "autoport": "yes" if auto else "no",
            "listen": graphics.listen,
        },
    )
    sub(el, "listen", {"type": "address", "address": graphics.listen})
    return el


def parse_graphics(devices: Element) -> GraphicsSpec | None:
    """The first VNC display, or None. A running domain's chosen autoport reads back as -1."""
    el = devices.find("graphics[@type='vnc']")
    if el is None:
        return None
    listen_el = el.find("listen[@type='address']")
    listen = listen_el.get("address") if listen_el is not None else None
    listen = listen if listen is not None else el.get("listen")
    port = -1
    if el.get("autoport") != "yes" and el.get("port") is not None:
        port = to_int(el.get("port"), "the VNC port")
    return GraphicsSpec(port=port) if listen is None else GraphicsSpec(listen=listen, port=port)



def vnc_address(domain_xml: str) -> tuple[str, int] | None:
    """(listen address, port) of a domain's first VNC display: the port libvirt picked while the domain
    runs, -1 while an automatic port is not chosen yet. None without a VNC display."""
    devices = parse(domain_xml, "domain").find("devices")
    graphics = parse_graphics(devices) if devices is not None else None
    if devices is None or graphics is None:
        return None
    el = devices.find("graphics[@type='vnc']")
    port = to_int(el.get("port"), "the VNC port") if el is not None and el.get("port") else -1
    return graphics.listen, port if port > 0 else -1


def vnc_listen(domain_xml: str) -> tuple[str, str] | None:
    """How the first VNC display listens: ("address", ADDR), ("socket", PATH) or ("none", ""); None without one."""
    devices = parse(domain_xml, "domain").find("devices")
    el = devices.find("graphics[@type='vnc']") if devices is not None else None
    if el is None:
        return None
    listen = el.find("listen")
    kind = listen.get("type") if listen is not None else None
    if el.get("socket") or kind == "socket":
        return "socket", (listen.get("socket") if listen is not None else None) or el.get("socket") or ""
    if kind == "none":
        return "none", ""
    address = (listen.get("address") if listen is not None else None) or el.get("listen")
    return "address", address or "0.0.0.0"  # noqa: S104 - QEMU's default when nothing is set: every address
