"""kvmhub specs ⇄ libvirt XML, one module per libvirt element family.

Builders take kvmhub models (or plain values) and return XML text for libvirt calls; readers take
libvirt's XML, kvmhub's own or ``dumpxml`` of any domain, and return models. User values only ever pass
through lxml, never string formatting. Errors are :class:`kvmhub.errors.InvalidInput`.

Each name is loaded from its module on first use: a caller of one module does not load them all (and their models).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kvmhub.models.lazy import loader

if TYPE_CHECKING:
    from kvmhub.xml.disk import disk_from_xml, disk_to_xml
    from kvmhub.xml.domain import domain_from_xml, domain_is_managed, domain_to_xml
    from kvmhub.xml.interface import interface_from_xml, interface_to_xml
    from kvmhub.xml.metadata import KVMHUB_NS, KVMHUB_PREFIX, metadata_from_xml, metadata_to_xml
    from kvmhub.xml.network import (
        NetworkFacts,
        network_bridge_from_xml,
        network_from_xml,
        network_subnet_from_xml,
        network_to_xml,
    )
    from kvmhub.xml.pool import dir_pool_xml, pool_path_from_xml
    from kvmhub.xml.volume import VolumeFacts, volume_from_xml, volume_xml

__all__ = [
    "KVMHUB_NS",
    "KVMHUB_PREFIX",
    "NetworkFacts",
    "VolumeFacts",
    "dir_pool_xml",
    "disk_from_xml",
    "disk_to_xml",
    "domain_from_xml",
    "domain_is_managed",
    "domain_to_xml",
    "interface_from_xml",
    "interface_to_xml",
    "metadata_from_xml",
    "metadata_to_xml",
    "network_bridge_from_xml",
    "network_from_xml",
    "network_subnet_from_xml",
    "network_to_xml",
    "pool_path_from_xml",
    "volume_from_xml",
    "volume_xml",
]

_WHERE = {
    "disk_from_xml": "disk",
    "disk_to_xml": "disk",
    "domain_from_xml": "domain",
    "domain_is_managed": "domain",
    "domain_to_xml": "domain",
    "interface_from_xml": "interface",
    "interface_to_xml": "interface",
    "KVMHUB_NS": "metadata",
    "KVMHUB_PREFIX": "metadata",
    "metadata_from_xml": "metadata",
    "metadata_to_xml": "metadata",
    "NetworkFacts": "network",
    "network_bridge_from_xml": "network",
    "network_from_xml": "network",
    "network_subnet_from_xml": "network",
    "network_to_xml": "network",
    "dir_pool_xml": "pool",
    "pool_path_from_xml": "pool",
    "VolumeFacts": "volume",
    "volume_from_xml": "volume",
    "volume_xml": "volume",
}


__getattr__, __dir__ = loader(__name__, _WHERE, __all__)
