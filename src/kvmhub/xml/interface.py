"""``<interface>``: a VM's network cards."""

from __future__ import annotations

from typing import Any

from kvmhub.errors import InvalidInput
from kvmhub.models import NICSpec
from kvmhub.xml._util import Element, choices, expect_root, make, parse, serialize, sub
from kvmhub.xml.tuning import build_bandwidth, parse_bandwidth

_MODELS = choices(NICSpec, "model")


def build_interface(nic: NICSpec) -> Element:
    """The ``<interface>`` element for ``nic``.

    A libvirt network gives ``type='network'``, a host bridge ``type='bridge'``; with neither the NIC
    is user-mode networking (``type='user'``). Raises InvalidInput if both are set.
    """
    if nic.network is not None and nic.bridge is not None:
        raise InvalidInput(
            f"NIC on network {nic.network!r} also names bridge {nic.bridge!r}",
            hint="give either a libvirt network or a host bridge",
        )
    if nic.network is not None:
        el = make("interface", {"type": "network"})
    elif nic.bridge is not None:
        el = make("interface", {"type": "bridge"})
    else:
        el = make("interface", {"type": "user"})
    if nic.mac is not None:
        sub(el, "mac", {"address": nic.mac})
    if nic.network is not None:
        sub(el, "source", {"network": nic.network})
    elif nic.bridge is not None:
        sub(el, "source", {"bridge": nic.bridge})
    sub(el, "model", {"type": nic.model})
    if nic.filter is not None:
        ref = sub(el, "filterref", {"filter": nic.filter})
        for key, value in sorted(nic.filter_params.items()):
            sub(ref, "parameter", {"name": key, "value": value})
    if nic.bandwidth is not None:
        el.append(build_bandwidth(nic.bandwidth))
    if nic.link is not None:
        sub(el, "link", {"state": nic.link})
    return el


def parse_interface(el: Element) -> NICSpec | None:
    """Read an ``<interface>`` element; None for a kind NICSpec does not model.

    Direct (macvtap), ethernet, vhost-user, hostdev interfaces and models outside NICSpec's choices
    are skipped rather than misreported. A missing ``<model>`` reads as NICSpec's default.
    """
    kind = el.get("type")
    source = el.find("source")
    fields: dict[str, Any] = {}
    if kind in ("network", "bridge"):
        fields[kind] = (source.get(kind) if source is not None else None) or ""
    elif kind != "user":
        return None
    mac = el.find("mac")
    if mac is not None:
        fields["mac"] = mac.get("address")
    model = el.find("model")
    if model is not None:
        if model.get("type") not in _MODELS:
            return None
        fields["model"] = model.get("type")
    bandwidth = el.find("bandwidth")
    if bandwidth is not None:
        fields["bandwidth"] = parse_bandwidth(bandwidth)
    link = el.find("link")
    if link is not None and link.get("state") in ("up", "down"):
        fields["link"] = link.get("state")
    filterref = el.find("filterref")
    if filterref is not None and filterref.get("filter") is not None:
        fields["filter"] = filterref.get("filter")
        fields["filter_params"] = {p.get("name", ""): p.get("value", "") for p in filterref.iterfind("parameter")}
    return NICSpec.model_validate(fields)


def interface_to_xml(nic: NICSpec) -> str:
    """The ``<interface>`` device XML, e.g. for ``attachDeviceFlags``. Raises InvalidInput if ambiguous."""
    return serialize(build_interface(nic))


def interface_from_xml(xml: str) -> NICSpec:
    """Read one ``<interface>`` device XML. Raises InvalidInput if malformed or not modelled by NICSpec."""
    el = parse(xml, "interface")
    expect_root(el, "interface", "interface")
    nic = parse_interface(el)
    if nic is None:
        raise InvalidInput(
            "cannot read the interface XML",
            cause=f"kvmhub does not model interfaces of type {el.get('type')!r} or this NIC model",
        )
    return nic
