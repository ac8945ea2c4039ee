"""Network filters (libvirt nwfilter), every call bounded and translated."""

from __future__ import annotations

from kvmhub.hv.connection import Hypervisor


def filter_names(hv: Hypervisor) -> list[str]:
    return [str(f.name()) for f in hv.call(hv.conn.listAllNWFilters, 0, what="listing network filters", retry=True)]


def define_filter(hv: Hypervisor, xml: str) -> None:
    """Define (or redefine) a network filter."""
    hv.call(hv.conn.nwfilterDefineXML, xml, what="defining a network filter")


def undefine_filter(hv: Hypervisor, name: str) -> None:
    nwf = hv.call(hv.conn.nwfilterLookupByName, name, what=f"looking up network filter {name!r}")
    hv.call(nwf.undefine, what=f"removing network filter {name!r}")
