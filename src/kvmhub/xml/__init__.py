"""kvmhub specs ⇄ libvirt XML, one module per libvirt element family.

Builders take kvmhub models (or plain values) and return XML text for libvirt calls; readers take
libvirt's XML, kvmhub's own or ``dumpxml`` of any domain, and return models. User values only ever pass
through lxml, never string formatting. Errors are :class:`kvmhub.errors.InvalidInput`.
"""

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
