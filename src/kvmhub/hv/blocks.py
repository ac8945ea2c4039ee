"""A running VM's block devices (resize, sizes) and a pool's free space, every call bounded."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from kvmhub.hv.domains import Domain
from kvmhub.hv.storage import Pool


@dataclass(frozen=True)
class BlockInfo:
    capacity: int  # bytes the guest sees
    allocation: int  # bytes in use on the host
    physical: int  # size of the host file or device


def block_resize(dom: Domain, target: str, size_bytes: int) -> None:
    """Grow disk ``target`` of a running VM to ``size_bytes``; QEMU resizes the image and tells the guest."""
    dom.call(f"resizing disk {target} of", dom.handle.blockResize, target, size_bytes,
             libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)


def block_info(dom: Domain, target: str) -> BlockInfo:
    """Sizes of disk ``target`` as QEMU sees them (network disks too)."""
    capacity, allocation, physical = dom.call(f"reading disk {target} of", dom.handle.blockInfo, target, 0)
    return BlockInfo(int(capacity), int(allocation), int(physical))


def pool_available(pool: Pool) -> int:
    """Bytes free in the pool, after a refresh so files written by QEMU count."""
    pool.refresh()
    _state, _capacity, _allocation, available = pool.hv.call(
        pool._pool.info, what=f"reading free space (pool {pool.name})"
    )
    return int(available)
