"""Finding a VM by name: the one lookup every verb starts with, kept apart from the lifecycle module so that a
command which only needs the domain does not load the create and boot machinery."""

from __future__ import annotations

from kvmhub.errors import NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.validate import check_name


def get(hv: Hypervisor, name: str) -> hv_domains.Domain:
    """The VM called `name` (raises InvalidInput for a bad name, NotFound with code vm.not_found)."""
    check_name(name, "VM")
    try:
        return hv_domains.lookup(hv, name)
    except NotFound:
        raise NotFound(f"no VM named {name!r}", hint="list them: {cmd:ls}", code="vm.not_found") from None
