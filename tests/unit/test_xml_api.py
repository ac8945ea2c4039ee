"""The library face of kvmhub.xml: a curated export list, every entry documented."""

from __future__ import annotations

import kvmhub.xml


def test_exports_are_curated() -> None:
    assert sorted(kvmhub.xml.__all__) == [
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


def test_every_public_callable_has_a_docstring() -> None:
    for name in kvmhub.xml.__all__:
        obj = getattr(kvmhub.xml, name)
        if callable(obj):
            assert obj.__doc__, name
