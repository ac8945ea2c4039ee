"""Storage pools and volumes through libvirt's storage API, every call bounded and translated."""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

import libvirt

from kvmhub.errors import KvmhubError, NotFound
from kvmhub.hv.connection import Hypervisor

CHUNK = 4 * 1024 * 1024
TRANSFER_TIMEOUT = 3600.0
# kvmhub's record, inside a pool directory it made, that it made it; never listed as a volume
CREATED_MARKER = ".kvmhub-created"


class _Cancellable(io.RawIOBase):
    """A file whose reads and writes fail once ``cancel`` is set, so a transfer thread stops at its next chunk."""

    def __init__(self, fh: BinaryIO, cancel: threading.Event) -> None:
        super().__init__()
        self._fh = fh
        self._cancel = cancel

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise OSError("interrupted")
        return self._fh.read(size)

    def write(self, data: Any) -> int:
        if self._cancel.is_set():
            raise OSError("interrupted")
        return self._fh.write(data)


@contextlib.contextmanager
def cancellable(fh: BinaryIO) -> Iterator[BinaryIO]:
    """``fh`` wrapped for :meth:`Volume.upload` / :meth:`Volume.download`: while inside, Ctrl-C also stops the
    transfer running on the bounded call's thread (its next read or write fails) before KeyboardInterrupt
    is raised here, so the interrupted call returns at once instead of running to its end."""
    cancel = threading.Event()
    wrapped = cast(BinaryIO, _Cancellable(fh, cancel))
    if threading.current_thread() is not threading.main_thread():
        yield wrapped
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        cancel.set()
        if callable(previous):
            previous(signum, frame)  # type: ignore[arg-type]
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield wrapped
    finally:
        signal.signal(signal.SIGINT, previous)


_POOL_STATES = {
    libvirt.VIR_STORAGE_POOL_INACTIVE: "inactive",
    libvirt.VIR_STORAGE_POOL_BUILDING: "building",
    libvirt.VIR_STORAGE_POOL_RUNNING: "active",
    libvirt.VIR_STORAGE_POOL_DEGRADED: "degraded",
    libvirt.VIR_STORAGE_POOL_INACCESSIBLE: "inaccessible",
}


@dataclass(frozen=True)
class VolumeInfo:
    pool: str
    name: str
    path: str
    capacity: int
    allocation: int


@dataclass(frozen=True)
class PoolState:
    """A pool's run state and sizes in bytes, as libvirt saw them at the last refresh."""

    state: str
    capacity: int
    allocation: int
    available: int


class Pool:
    def __init__(self, hv: Hypervisor, pool: Any) -> None:
        self.hv = hv
        self._pool = pool
        self.name: str = pool.name()

    def _call(self, what: str, fn: Any, *args: Any, timeout: float | None = None, retry: bool = False) -> Any:
        """``retry``: a read (see :meth:`Hypervisor.call`)."""
        return self.hv.call(fn, *args, what=f"{what} (pool {self.name})", timeout=timeout, retry=retry,
                            reconnect=False)

    def is_active(self) -> bool:
        return bool(self._call("reading pool state", self._pool.isActive, retry=True))

    def start(self) -> None:
        self._call("starting pool", self._pool.create, 0)

    def autostart(self) -> bool:
        return bool(self._call("reading autostart", self._pool.autostart, retry=True))

    def set_autostart(self, on: bool) -> None:
        self._call("setting autostart", self._pool.setAutostart, 1 if on else 0)

    def refresh(self) -> None:
        self._call("refreshing pool", self._pool.refresh, 0)

    def state(self) -> PoolState:
        code, capacity, allocation, available = self._call("reading pool state", self._pool.info, retry=True)
        return PoolState(_POOL_STATES.get(int(code), "unknown"), int(capacity), int(allocation), int(available))

    def build(self) -> None:
        """Make the pool's storage (a directory, a mount point, a volume group over its devices)."""
        self._call("building pool", self._pool.build, 0, timeout=max(self.hv.timeout, 120.0))

    def stop(self) -> None:
        """Deactivate the pool (unmounts, logs out); its volumes' data stays."""
        self._call("stopping pool", self._pool.destroy)

    def undefine(self) -> None:
        self._call("undefining pool", self._pool.undefine)

    def delete_storage(self) -> None:
        """Remove what build() made (an empty directory, a volume group); the pool must be inactive."""
        self._call("deleting the storage of pool", self._pool.delete, 0, timeout=max(self.hv.timeout, 120.0))

    def xml(self) -> str:
        return str(self._call("reading pool definition", self._pool.XMLDesc, 0, retry=True))

    def volume_names(self) -> list[str]:
        names = self._call("listing volumes", self._pool.listVolumes, retry=True)
        return [str(n) for n in names if n != CREATED_MARKER]

    def volume(self, name: str) -> Volume:
        try:
            vol = self._call(f"looking up volume {name!r}", self._pool.storageVolLookupByName, name, retry=True)
        except NotFound:
            raise volume_not_found(self.name, name) from None
        return Volume(self.hv, vol, self.name)

    def has_volume(self, name: str) -> bool:
        return name in self.volume_names()

    def create_volume(self, xml: str, *, what: str) -> Volume:
        vol = self._call(what, self._pool.createXML, xml, 0, timeout=TRANSFER_TIMEOUT)
        return Volume(self.hv, vol, self.name)

    def create_volume_from(self, xml: str, src: Volume, *, what: str) -> Volume:
        """A new volume described by ``xml`` holding a full copy of ``src`` (libvirt converts formats)."""
        vol = self._call(what, self._pool.createXMLFrom, xml, src._vol, 0, timeout=TRANSFER_TIMEOUT)
        return Volume(self.hv, vol, self.name)


class Volume:
    def __init__(self, hv: Hypervisor, vol: Any, pool: str) -> None:
        self.hv = hv
        self._vol = vol
        self.pool = pool
        self.name: str = vol.name()

    def _call(self, what: str, fn: Any, *args: Any, timeout: float | None = None, retry: bool = False) -> Any:
        """``retry``: a read (see :meth:`Hypervisor.call`)."""
        return self.hv.call(fn, *args, what=f"{what} (volume {self.pool}/{self.name})", timeout=timeout,
                            retry=retry, reconnect=False)

    @property
    def path(self) -> str:
        return str(self._call("reading path", self._vol.path))

    @property
    def key(self) -> str:
        """libvirt's key of the volume: what tells it from another volume later given its name."""
        return str(self._call("reading key", self._vol.key))

    def xml(self) -> str:
        return str(self._call("reading definition", self._vol.XMLDesc, 0, retry=True))

    def info(self) -> VolumeInfo:
        _kind, capacity, allocation = self._call("reading size", self._vol.info, retry=True)
        return VolumeInfo(self.pool, self.name, self.path, int(capacity), int(allocation))

    def delete(self) -> None:
        self._call("deleting", self._vol.delete, 0)

    def resize(self, capacity: int, *, shrink: bool = False) -> None:
        flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if shrink else 0
        self._call("resizing", self._vol.resize, capacity, flags, timeout=TRANSFER_TIMEOUT)

    def upload(self, src: BinaryIO, length: int, progress: Callable[[int], None] | None = None) -> None:
        """Stream `length` bytes from `src` into the volume (works on remote hosts too)."""
        hv = self.hv

        def transfer() -> None:
            stream = hv.conn.newStream(0)
            self._vol.upload(stream, 0, length, 0)
            try:
                sent = 0
                while sent < length:
                    data = src.read(min(CHUNK, length - sent))
                    if not data:
                        raise OSError(f"source ended after {sent} of {length} bytes")
                    view = memoryview(data)
                    while view:
                        n = stream.send(bytes(view))
                        view = view[n:]
                    sent += len(data)
                    if progress:
                        progress(sent)
                stream.finish()
            except BaseException:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise

        self._call("uploading into", transfer, timeout=TRANSFER_TIMEOUT)

    def download(self, dst: BinaryIO, progress: Callable[[int], None] | None = None) -> int:
        """Stream the whole volume into `dst` (works on remote hosts too); returns the bytes received."""
        hv = self.hv

        def transfer() -> int:
            stream = hv.conn.newStream(0)
            self._vol.download(stream, 0, 0, 0)
            try:
                got = 0
                while True:
                    data = stream.recv(CHUNK)
                    if isinstance(data, int):
                        raise OSError(f"the volume stream failed after {got} bytes (code {data})")
                    if not data:
                        break
                    dst.write(data)
                    got += len(data)
                    if progress:
                        progress(got)
                stream.finish()
                return got
            except BaseException:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise

        return int(self._call("downloading from", transfer, timeout=TRANSFER_TIMEOUT))


def lookup_pool(hv: Hypervisor, name: str) -> Pool:
    try:
        pool = hv.call(hv.conn.storagePoolLookupByName, name, what=f"looking up pool {name!r}", retry=True)
    except NotFound:
        raise NotFound(
            f"no storage pool {name!r}",
            hint="{cmd:host setup} defines kvmhub's pools; list them with `virsh pool-list --all`",
            code="pool.not_found",
        ) from None
    return Pool(hv, pool)


def define_pool(hv: Hypervisor, xml: str) -> Pool:
    """Define (not start) a persistent pool from its XML."""
    raw = hv.call(hv.conn.storagePoolDefineXML, xml, 0, what="defining the pool")
    return Pool(hv, raw)


def list_pools(hv: Hypervisor) -> list[Pool]:
    """Every pool, active or not."""
    pools = hv.call(hv.conn.listAllStoragePools, 0, what="listing storage pools", retry=True)
    return [Pool(hv, p) for p in pools]


def pool_names(hv: Hypervisor) -> list[str]:
    pools = hv.call(hv.conn.listAllStoragePools, 0, what="listing storage pools", retry=True)
    return [str(p.name()) for p in pools]


def ensure_pool(hv: Hypervisor, name: str, xml: str) -> tuple[Pool, bool]:
    """Define, build, start and autostart a pool if needed; returns (pool, changed)."""
    changed = False
    if name not in pool_names(hv):
        raw = hv.call(hv.conn.storagePoolDefineXML, xml, 0, what=f"defining pool {name!r}")
        try:
            hv.call(raw.build, 0, what=f"building pool {name!r}")
        except KvmhubError:
            pass  # a directory that already exists is fine
        changed = True
    pool = lookup_pool(hv, name)
    if not pool.is_active():
        pool.start()
        changed = True
    if not pool.autostart():
        pool.set_autostart(True)
        changed = True
    return pool, changed


def volume_by_path(hv: Hypervisor, path: str) -> Volume | None:
    """The volume at `path`, if libvirt knows one there."""
    try:
        vol = hv.call(hv.conn.storageVolLookupByPath, path, what=f"looking up volume at {path}", retry=True)
    except KvmhubError:
        return None
    pool = hv.call(vol.storagePoolLookupByVolume, what="finding the pool of a volume")
    return Volume(hv, vol, str(pool.name()))


def volume_not_found(pool: str, name: str) -> NotFound:
    """The error for a missing volume, also given for one the caller may not see (the same words)."""
    return NotFound(f"no volume {name!r} in pool {pool}", hint=f"list them: `virsh vol-list {pool}`",
                    code="volume.not_found")
