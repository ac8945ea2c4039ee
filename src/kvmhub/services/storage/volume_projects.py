"""Whose a volume is: the project that may see and change it through the server.

libvirt keeps no metadata on volumes. A volume made with ``vol create``, ``vol clone`` or ``vol upload`` belongs
to the project kvmhub recorded for it (:func:`kvmhub.services.projects.record_volume`), as long as the volume at
that pool and name still has the recorded path. Any other volume belongs to the project of the image kvmhub
imported into it, else to the project of the first VM (by name) that has it as a disk or as the base of an
overlay, else to ``default``: a VM's disks are its project's, and volumes made by other tools are the default
project's.
"""

from __future__ import annotations

from kvmhub.hv import Hypervisor
from kvmhub.models import DEFAULT_PROJECT, VolumeInfo
from kvmhub.services import owners, projects
from kvmhub.services.storage import image_records


class Owners:
    """The projects of a host's volumes, from one read of the records and of the VMs' projects."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self.rows = projects.volume_rows(hv)
        self._vms: dict[str, str] | None = None
        self._images: dict[str, dict[str, image_records.Record]] = {}

    def of(self, info: VolumeInfo) -> str:
        """The project ``info`` belongs to."""
        ref = f"{info.pool}/{info.name}"
        row = self.rows.get(ref)
        if row is not None and row[0] == info.path:
            return row[1]
        if info.pool not in self._images:
            self._images[info.pool] = image_records.in_pool(self.hv.uri, info.pool)
        image = self._images[info.pool].get(info.name)
        if image is not None and image.matches(info.path) and image.meta.project:
            return image.meta.project
        if info.used_by:
            if self._vms is None:
                self._vms = owners.owners(self.hv)
            for vm in info.used_by:
                if vm in self._vms:
                    return self._vms[vm]
        return DEFAULT_PROJECT


def visible(infos: list[VolumeInfo], only: frozenset[str] | None) -> list[VolumeInfo]:
    """The volumes of ``only``'s projects (all of them when ``only`` is None)."""
    return infos if only is None else [v for v in infos if v.project in only]
