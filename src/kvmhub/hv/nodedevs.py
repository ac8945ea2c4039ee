"""Node devices: libvirt's view of the host's hardware (``virsh nodedev-list``), every call bounded."""

from __future__ import annotations

from typing import Any

import libvirt

from kvmhub.hv.connection import Hypervisor


def node_device_xmls(hv: Hypervisor) -> list[str]:
    """The XML of every node device of the host (a device gone between listing and reading is skipped)."""

    def read_all() -> list[str]:
        out: list[str] = []
        for dev in hv.conn.listAllDevices(0):
            try:
                out.append(str(dev.XMLDesc(0)))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_NODE_DEVICE:
                    raise
        return out

    found: Any = hv.call(read_all, what="listing the host's devices", retry=True)
    return list(found)
