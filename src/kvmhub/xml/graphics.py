"""``<graphics>``: the VM's VNC display."""

from __future__ import annotations

from kvmhub.models import GraphicsSpec
from kvmhub.xml._util import Element, make, sub, to_int


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
