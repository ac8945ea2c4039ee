"""Big media a request names on the kvmhub host (an installer ISO, a kernel, an export archive): a host
path, or a libvirt volume such as one uploaded with ``kvmhub vol upload``."""

from __future__ import annotations

from pathlib import Path

from kvmhub.errors import HostProblem, NotFound
from kvmhub.hv import Hypervisor, host_root, is_local_uri
from kvmhub.hv import storage as hv_storage
from kvmhub.models.documents import HostMedia
from kvmhub.services.storage.volumes import split_ref

__all__ = ["media_path"]


def media_path(hv: Hypervisor, media: HostMedia, what: str) -> Path:
    """The file ``media`` names, as kvmhub reads it here; ``what`` names it in errors (e.g. ``--iso``).

    A ``path`` is returned as given (the caller checks it is a readable file). A ``volume`` (POOL/VOL) is
    looked up through libvirt: raises NotFound for a missing pool or volume, HostProblem when the volume's
    host is not this machine (its file cannot be read from here).
    """
    if media.path is not None:
        return Path(media.path)
    ref = str(media.volume)
    pool_name, vol_name = split_ref(ref)
    pool = hv_storage.lookup_pool(hv, pool_name)
    if not pool.has_volume(vol_name):
        raise NotFound(f"{what} {ref}: pool {pool_name} has no volume {vol_name!r}",
                       hint=f"upload the file first: {{cmd:vol upload {ref} FILE}}; {{cmd:vol ls {pool_name}}} "
                            "lists the volumes there", code="volume.not_found")
    if not is_local_uri(hv.uri):
        raise HostProblem(f"{what} {ref} is on {hv.uri}, not on this machine, so kvmhub cannot read it here",
                          hint="give the file's path on this machine instead")
    return Path(host_root() + pool.volume(vol_name).path)
