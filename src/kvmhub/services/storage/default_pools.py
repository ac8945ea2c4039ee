"""kvmhub's storage pools: where images and VM disks live (ordinary libvirt dir pools)."""

from __future__ import annotations

from kvmhub.errors import KvmhubError
from kvmhub.hv import Hypervisor
from kvmhub.hv import storage as hv_storage
from kvmhub.models import CheckItem, CheckStatus
from kvmhub.xml.pool import dir_pool_xml

DISKS_POOL = "default"
DISKS_PATH = "/var/lib/libvirt/images"
IMAGES_POOL = "kvmhub-images"
IMAGES_PATH = "/var/lib/libvirt/kvmhub-images"

_POOLS = ((DISKS_POOL, DISKS_PATH, "VM disks"), (IMAGES_POOL, IMAGES_PATH, "images"))


def ensure_pools(hv: Hypervisor) -> list[str]:
    """Define, start and autostart the disks and images pools; returns what was changed."""
    done = []
    for name, path, role in _POOLS:
        _pool, changed = hv_storage.ensure_pool(hv, name, dir_pool_xml(name, path))
        if changed:
            done.append(f"storage pool {name} ({role}, {path}) ready")
    return done


def check_pools(hv: Hypervisor) -> list[CheckItem]:
    items = []
    for name, _path, role in _POOLS:
        label = f"pool {name}"
        try:
            pool = hv_storage.lookup_pool(hv, name)
            active = pool.is_active()
        except KvmhubError:
            items.append(CheckItem(name=label, status=CheckStatus.FAIL, detail=f"not defined ({role})",
                                   fix="`kvmhub host setup`"))
            continue
        if not active:
            items.append(CheckItem(name=label, status=CheckStatus.FAIL, detail="inactive",
                                   fix="`kvmhub host setup`"))
        else:
            items.append(CheckItem(name=label, status=CheckStatus.OK, detail=f"active ({role})"))
    return items


def disks_pool(hv: Hypervisor) -> hv_storage.Pool:
    return _active(hv, DISKS_POOL)


def images_pool(hv: Hypervisor) -> hv_storage.Pool:
    return _active(hv, IMAGES_POOL)


def _active(hv: Hypervisor, name: str) -> hv_storage.Pool:
    pool = hv_storage.lookup_pool(hv, name)
    if not pool.is_active():
        pool.start()
    return pool
