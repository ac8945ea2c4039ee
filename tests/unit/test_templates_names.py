"""A VM made from a template has the volumes a VM made by `create` has, so names stay taken alike."""

from __future__ import annotations

from kvmhub.services.templates import warm
from kvmhub.services.vm import create


def test_warm_vms_get_the_volume_names_create_gives() -> None:
    assert (warm.disk_volume("web-1"), warm.seed_volume("web-1")) == (create.disk_volume("web-1"),
                                                                      create.seed_volume("web-1"))
