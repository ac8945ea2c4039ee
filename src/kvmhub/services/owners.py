"""Which project each VM belongs to, as its kvmhub metadata names it, remembered per UUID.

kvmhub writes a VM's project only when it defines the VM, so each is read once and checked again after
:data:`OWNER_TTL_S` (an edit by another tool is seen then): a listing of 500 VMs otherwise reads 500 metadata.
What one process read is kept on disk for the next (:mod:`kvmhub.services.owners_store`), with the same age
limit. This module loads no pydantic model, so `kvmhub ls`'s fast path uses it too.
"""

from __future__ import annotations

import threading
import time

from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.services import owners_store

OWNER_TTL_S = 60.0
_owners: dict[str, tuple[str, float]] = {}
_owners_lock = threading.Lock()


def owners(hv: Hypervisor, transient: frozenset[str] | None = None) -> dict[str, str]:
    """Every VM's name and the project it belongs to (``transient``: the transient VMs' names, when known)."""
    now = time.monotonic()
    out, unknown = _split(hv_domains.list_all(hv), now)
    if unknown and owners_store.kept(hv.uri):
        stored = owners_store.load(hv.uri, OWNER_TTL_S)
        with _owners_lock:
            for uuid, entry in stored.items():
                if uuid not in _owners or _owners[uuid][1] < entry[1]:
                    _owners[uuid] = entry
        found_on_disk, unknown = _split(unknown, now)
        out.update(found_on_disk)
    if not unknown:
        return out
    if transient is None:
        transient = hv_domains.listing_flags(hv).transient
    texts = hv_domains.metadata_of(hv, unknown, transient)
    found = [(dom.uuid, _remember(dom.uuid, texts.get(dom.uuid), now)) for dom in unknown]
    for dom, (_, project) in zip(unknown, found, strict=True):
        out[dom.name] = project
    if owners_store.kept(hv.uri):
        owners_store.save(hv.uri, found)
    return out


def _split(doms: list[hv_domains.Domain], now: float) -> tuple[dict[str, str], list[hv_domains.Domain]]:
    """The projects of ``doms`` remembered here (by name), and the domains whose project must be found."""
    known: dict[str, str] = {}
    unknown: list[hv_domains.Domain] = []
    for dom in doms:
        if (project := _remembered(dom.uuid, now)) is not None:  # the UUID is known to the handle: no round trip
            known[dom.name] = project
        else:
            unknown.append(dom)
    return known, unknown


def owner(hv: Hypervisor, dom: hv_domains.Domain, transient: bool) -> str:
    """The project of one VM, as :func:`owners` gives it (remembered the same way)."""
    now = time.monotonic()
    if (known := _remembered(dom.uuid, now)) is not None:
        return known
    texts = hv_domains.metadata_of(hv, [dom], frozenset({dom.name}) if transient else frozenset())
    return _remember(dom.uuid, texts.get(dom.uuid), now)


def forget(uuid: str) -> None:
    """Drop what :func:`owners` remembers of the VM ``uuid`` (it was removed: its UUID may come back)."""
    with _owners_lock:
        _owners.pop(uuid, None)
    owners_store.forget(uuid)


def _remembered(uuid: str, now: float) -> str | None:
    with _owners_lock:
        known = _owners.get(uuid)
    return known[0] if known is not None and now - known[1] < OWNER_TTL_S else None


def _remember(uuid: str, text: str | None, now: float) -> str:
    # lxml is loaded only here: a listing whose owners are all remembered never needs it
    from kvmhub.xml.metadata import project_from_xml

    project = project_from_xml(text)
    with _owners_lock:
        _owners[uuid] = (project, now)
    return project
