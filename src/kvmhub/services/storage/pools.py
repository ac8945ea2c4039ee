"""Storage pools: create (define, build, start, autostart, with undo), list, show, refresh, start, stop, remove.

Volumes inside pools are in :mod:`kvmhub.services.storage.volumes`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import posixpath
import uuid as uuidlib
from typing import Any

from kvmhub import faults
from kvmhub.errors import Conflict, HostProblem, InvalidInput, KvmhubError, NotFound, OperationTimeout
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import storage as hv_storage
from kvmhub.models import PoolInfo, PoolSpec
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.storage import usage as storage_usage
from kvmhub.validate import check_name
from kvmhub.xml import pool as xml_pool
from kvmhub.xml._util import child_text, parse, with_uuid

# types whose build() makes a directory (or a VG) that delete_storage() removes again
_BUILT = ("dir", "fs", "netfs")
_DELETABLE = ("dir", "fs", "netfs", "logical")


def _quiet(_msg: str) -> None:
    """Progress messages go nowhere unless the caller asks for them."""


# -- what the host's kernel can do (checked before anything is defined) -------------------------------------


def local_root(hv: Hypervisor) -> str | None:
    """The root of the libvirt host's file system as seen from here; None for a remote or test:/// host."""
    if not host_files_here(hv.uri):
        return None
    return host_root()


def resolve(root: str, path: str) -> str:
    """``path`` with every symlink followed, as the host sees it (absolute links stay inside ``root``).

    Components that do not exist yet are kept as written; a link loop comes back unresolved.
    """
    parts = [p for p in path.split("/") if p]
    done = ""
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = posixpath.dirname(done) if done else ""
            continue
        candidate = f"{done}/{part}"
        if os.path.islink(root + candidate):
            hops += 1
            if hops > 40:
                return candidate  # a link loop: treated as unresolvable, refused by the caller
            link = os.readlink(root + candidate)
            parts = [p for p in link.split("/") if p] + parts
            done = "" if link.startswith("/") else done
            continue
        done = candidate
    return done or "/"


def check_resolved_path(hv: Hypervisor, spec: PoolSpec) -> None:
    """Refuse a local pool path that reaches somewhere else through a symlink (the text check cannot see it)."""
    root = local_root(hv)
    if root is None or spec.path is None or spec.type == "iscsi":
        return
    real = resolve(root, spec.path)
    if real != spec.path:
        system = " (one of the host's system directories)" if xml_pool.is_system_dir(real) else ""
        raise InvalidInput(
            f"invalid pool path {spec.path!r}: it leads through a symlink to {real}{system}",
            cause="a pool's directory must be the path it names; a link could put the pool anywhere on the host",
            hint=f"give the real directory as {{opt:path}} (`realpath {spec.path}`), if it is not a system directory",
        )


def _read(root: str, path: str) -> str:
    try:
        with open(root + path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _has_module(root: str, name: str, subdir: str) -> bool:
    """The kernel has module `name` loaded, built in, or installed for the running release."""
    if os.path.isdir(f"{root}/sys/module/{name}"):
        return True
    base = f"{root}/lib/modules/{os.uname().release}"
    mod = name.replace("_", "[-_]")
    return bool(glob.glob(f"{base}/kernel/{subdir}/{mod}.ko*")) or f"/{name.replace('_', '-')}.ko" in _read(
        "", f"{base}/modules.builtin"
    ).replace("_", "-")


def _has_filesystem(root: str, fs: str, subdir: str) -> bool:
    names = {line.split()[-1] for line in _read(root, "/proc/filesystems").splitlines() if line.split()}
    return fs in names or _has_module(root, fs, subdir)


def _has_tool(root: str, tool: str) -> bool:
    return any(os.access(f"{root}{d}/{tool}", os.X_OK) for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"))


def check_host_support(hv: Hypervisor, spec: PoolSpec) -> None:
    """Refuse, before anything is defined, a pool type the local host's kernel or tools cannot serve.

    Only for a libvirt host on this machine (the kernel facts are read from /proc, /sys and /lib/modules);
    a remote host is left to libvirt, whose error is explained when the pool fails to start.
    """
    root = local_root(hv)
    if root is None:
        return
    what = f"cannot create {spec.type} pool {spec.name!r}"
    if spec.type == "netfs":
        if not _has_filesystem(root, "nfs", "fs/nfs"):
            raise HostProblem(
                f"{what}: this host's kernel has no NFS client (no 'nfs' in /proc/filesystems)",
                cause="a netfs pool mounts the export with the kernel's NFS client, and the running kernel "
                "has none (neither built in nor as a module)",
                hint="boot a kernel with CONFIG_NFS_FS (or `modprobe nfs`); without a pool, "
                "{cmd:disk add VM --url nfs://HOST/EXPORT/FILE} reaches NFS with QEMU's own client",
            )
        if not _has_tool(root, "mount.nfs"):
            raise HostProblem(f"{what}: mount.nfs is missing", cause="the NFS mount helper is not installed",
                              hint="`apt-get install nfs-common`")
    elif spec.type == "logical":
        if "device-mapper" not in _read(root, "/proc/devices") and not _has_module(root, "dm_mod", "drivers/md"):
            raise HostProblem(
                f"{what}: this host's kernel has no device-mapper (no 'device-mapper' in /proc/devices, "
                "no dm_mod module)",
                cause="LVM logical volumes are device-mapper devices",
                hint="boot a kernel with CONFIG_BLK_DEV_DM (or `modprobe dm_mod`), or use a dir pool",
            )
        if not _has_tool(root, "vgs"):
            raise HostProblem(f"{what}: the LVM tools are missing", hint="`apt-get install lvm2`")
    elif spec.type == "iscsi":
        if not _has_tool(root, "iscsiadm"):
            raise HostProblem(
                f"{what}: iscsiadm is missing (no kernel iSCSI initiator tools)",
                cause="an iscsi pool logs in with open-iscsi's iscsiadm and the kernel's iscsi_tcp",
                hint="`apt-get install open-iscsi`, or use {opt:type} iscsi-direct (libvirt's userspace "
                "initiator, no kernel support needed) with {opt:initiator_iqn}",
            )
        if not _has_module(root, "iscsi_tcp", "drivers/scsi"):
            raise HostProblem(
                f"{what}: this host's kernel has no iSCSI initiator (no iscsi_tcp module)",
                cause="an iscsi pool's LUNs appear as kernel block devices through iscsi_tcp",
                hint="use {opt:type} iscsi-direct (libvirt's userspace initiator) with {opt:initiator_iqn}, "
                "or boot a kernel with CONFIG_ISCSI_TCP",
            )
    elif spec.type == "fs":
        for dev in spec.devices:
            if not os.path.exists(root + dev):
                raise NotFound(f"{what}: no device {dev} on this host", hint="list them: `lsblk`")
        if spec.fs_format not in (None, "auto") and not _has_filesystem(root, spec.fs_format, f"fs/{spec.fs_format}"):
            raise HostProblem(f"{what}: this host's kernel has no {spec.fs_format} file system "
                              f"(not in /proc/filesystems)",
                              hint="use a format the kernel has, or {opt:fs_format} auto")


def _explain(spec: PoolSpec, exc: KvmhubError, doing: str) -> KvmhubError:
    """A libvirt failure while defining or starting a pool, with what it most likely means."""
    text = f"{exc.original or ''} {exc.message}".lower()
    if "missing backend" in text or "no storage pool backend" in text or "unsupported storage pool" in text:
        return HostProblem(
            f"{doing}: libvirt on this host has no {spec.type} storage backend",
            cause="the backend is a separate package, loaded when libvirtd starts",
            hint=f"`apt-get install libvirt-daemon-driver-storage-{spec.type}` and restart libvirtd",
            original=exc.original,
        )
    hints = {
        "netfs": f"check the server answers and exports {spec.export} to this host (`showmount -e {spec.host}`)",
        "iscsi-direct": f"check the target {spec.iqn} answers on {spec.host} and allows initiator "
        f"{spec.initiator_iqn}",
        "iscsi": f"check the target {spec.iqn} answers on {spec.host} (`iscsiadm -m discovery -t st -p {spec.host}`)",
        "logical": f"check the volume group exists: `vgs {spec.vg}`",
        "rbd": f"check the monitor {spec.host} answers and the key in the secret is right",
        "fs": f"check {', '.join(spec.devices)} holds a file system the kernel can mount",
    }
    if isinstance(exc, OperationTimeout):
        return OperationTimeout(f"{doing}: the storage did not answer in time", cause="the server "
                                "(or the device) behind the pool did not answer libvirt", hint=hints.get(spec.type),
                                original=exc.original)
    if isinstance(exc, Conflict | NotFound | HostProblem) and "libvirt refused" not in exc.message:
        exc.message = f"{doing}: {exc.message}"
        return exc
    return type(exc)(f"{doing} failed", cause=exc.cause or "libvirt could not reach or use the storage",
                     hint=hints.get(spec.type, exc.hint), original=exc.original)


# -- verbs ---------------------------------------------------------------------------------------------------


def create_pool(hv: Hypervisor, spec: PoolSpec, *, report: Reporter = QUIET) -> PoolInfo:
    """Define, build (where the type needs it), start and autostart a pool; undone step by step on failure.

    Raises InvalidInput (bad options), Conflict (name taken), HostProblem (kernel/tools/backend missing),
    OperationFailed (the storage could not be reached).
    """
    check_name(spec.name, "pool")
    xml = xml_pool.pool_to_xml(spec)
    if spec.name in hv_storage.pool_names(hv):
        raise Conflict(f"a pool named {spec.name!r} already exists", hint="pick another name, or "
                       f"{{cmd:pool rm {spec.name}}} first", code="name.taken")
    check_host_support(hv, spec)
    check_resolved_path(hv, spec)
    root = local_root(hv)
    pool_uuid = str(uuidlib.uuid4())
    xml = with_uuid(xml, "pool", pool_uuid)
    with Operation(hv, "pool.create", spec.name, locks=[LockSpec("pool", spec.name)], report=report) as op:
        if spec.name in hv_storage.pool_names(hv):  # again under the lock: a create of the same name may have won
            raise Conflict(f"a pool named {spec.name!r} already exists", code="name.taken")
        op.phase("defining")
        op.add(f"undefine pool {spec.name}", Action("pool.undefine", {"name": spec.name, "uuid": pool_uuid}))
        try:
            pool = hv_storage.define_pool(hv, xml)
        except KvmhubError as exc:
            raise _explain(spec, exc, f"defining pool {spec.name!r}") from exc
        faults.point("pool-define")
        if spec.type in _BUILT or (spec.type == "logical" and spec.devices):
            existed = None if root is None or spec.path is None else os.path.lexists(root + spec.path)
            op.phase("building")
            made = spec.type != "logical" and existed is not True
            marker = f"{spec.path}/{hv_storage.CREATED_MARKER}" if existed is False and spec.path else None
            if made:
                op.add(f"remove {spec.path}",
                       Action("pool.delete_storage", {"name": spec.name, "uuid": pool_uuid, "marker": marker}))
            pool.build()
            if marker is not None and root is not None:
                _mark_created(f"{root}{marker}")
            faults.point("pool-build")
        op.phase("starting")
        op.add(f"stop pool {spec.name}", Action("pool.stop", {"name": spec.name, "uuid": pool_uuid}))
        try:
            pool.start()
        except KvmhubError as exc:
            raise _explain(spec, exc, f"starting pool {spec.name!r}") from exc
        pool.set_autostart(True)
        faults.point("pool-start")
        op.success()
    return _info(pool, volumes=True)


def _ours(ctx: Context, p: dict[str, Any]) -> hv_storage.Pool | None:
    """The pool a step recorded, if it is still there under its name and UUID."""
    try:
        pool = hv_storage.lookup_pool(ctx.hv, p["name"])
    except NotFound:
        return None
    return pool if child_text(parse(pool.xml(), "pool"), "uuid") == p["uuid"] else None


@register("pool.stop")
def _stop_action(ctx: Context, p: dict[str, Any]) -> None:
    pool = _ours(ctx, p)
    if pool is not None and pool.is_active():
        pool.stop()


@register("pool.delete_storage")
def _delete_storage_action(ctx: Context, p: dict[str, Any]) -> None:
    pool = _ours(ctx, p)
    if pool is None:
        return
    if pool.is_active():
        pool.stop()
    if p.get("marker"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ctx.path(p["marker"]))
    path = xml_pool.pool_path_from_xml(pool.xml())
    if path is not None and ctx.hv.is_local and not os.path.lexists(ctx.path(path)):
        return  # never built
    pool.delete_storage()


@register("pool.undefine")
def _undefine_action(ctx: Context, p: dict[str, Any]) -> None:
    pool = _ours(ctx, p)
    if pool is None:
        return
    if pool.is_active():
        pool.stop()
    pool.undefine()


def _unlink(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)


def _mark_created(marker: str) -> None:
    """Leave the record that kvmhub made this directory (only then may `pool rm --delete-data` remove it)."""
    try:
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write("made by kvmhub pool create; kvmhub pool rm --delete-data removes this directory\n")
    except OSError:
        pass  # without the record the directory is treated as the user's and kept


def _made_by_kvmhub(hv: Hypervisor, path: str | None) -> bool:
    """Whether the (unmounted) directory ``path`` carries kvmhub's record that it made it; unknown = no."""
    root = local_root(hv)
    return root is not None and path is not None and os.path.isfile(f"{root}{path}/{hv_storage.CREATED_MARKER}")


def _info(pool: hv_storage.Pool, *, volumes: bool = False, used_by: list[str] | None = None) -> PoolInfo:
    xml = pool.xml()
    try:
        spec: PoolSpec | None = xml_pool.pool_from_xml(xml)
    except KvmhubError:
        spec = None  # a pool type kvmhub does not model (disk, scsi, zfs...): shown with what libvirt says
    st = pool.state()
    count = len(pool.volume_names()) if volumes and st.state == "active" else None
    return PoolInfo(
        name=pool.name,
        type=spec.type if spec else xml_pool.pool_type_from_xml(xml),
        state=st.state,  # type: ignore[arg-type]
        autostart=pool.autostart(),
        capacity_bytes=st.capacity,
        allocation_bytes=st.allocation,
        available_bytes=st.available,
        path=xml_pool.pool_path_from_xml(xml),
        source=xml_pool.pool_source_text(spec) if spec else None,
        volumes=count,
        used_by=used_by or [],
    )


def list_pools(hv: Hypervisor) -> list[PoolInfo]:
    """Every pool with its type, state, sizes and path."""
    return sorted((_info(p, volumes=True) for p in hv_storage.list_pools(hv)), key=lambda i: i.name)


def _volume_paths(pool: hv_storage.Pool) -> set[str]:
    if not pool.is_active():
        return set()
    return {pool.volume(n).path for n in pool.volume_names()}


def pool_users(hv: Hypervisor, pool: hv_storage.Pool, usage: storage_usage.Usage | None = None) -> list[str]:
    """VMs (defined or running) with a disk in ``pool``, or an overlay backed by one of its volumes."""
    usage = usage or storage_usage.scan(hv)
    return usage.vms_in_pool(pool.name, xml_pool.pool_path_from_xml(pool.xml()), _volume_paths(pool))


def show_pool(hv: Hypervisor, name: str) -> PoolInfo:
    """One pool, with its volume count and the VMs using its volumes."""
    pool = hv_storage.lookup_pool(hv, name)
    return _info(pool, volumes=True, used_by=pool_users(hv, pool))


def refresh_pool(hv: Hypervisor, name: str) -> PoolInfo:
    """Rescan the pool's storage (files added or removed behind libvirt's back)."""
    pool = _active(hv, name)
    pool.refresh()
    return _info(pool, volumes=True)


def _active(hv: Hypervisor, name: str) -> hv_storage.Pool:
    pool = hv_storage.lookup_pool(hv, name)
    if not pool.is_active():
        raise Conflict(f"pool {name!r} is not active", hint=f"start it: {{cmd:pool start {name}}}",
                       code="pool.inactive")
    return pool


def start_pool(hv: Hypervisor, name: str) -> PoolInfo:
    pool = hv_storage.lookup_pool(hv, name)
    if pool.is_active():
        raise Conflict(f"pool {name!r} is already active", cause="it was started before (or autostarted)",
                       hint=f"nothing to do; {{cmd:pool show {name}}} shows it, "
                       f"{{cmd:pool refresh {name}}} rescans it")
    try:
        pool.start()
    except KvmhubError as exc:
        try:
            spec = xml_pool.pool_from_xml(pool.xml())
        except KvmhubError:
            raise exc from None
        raise _explain(spec, exc, f"starting pool {name!r}") from exc
    return _info(pool, volumes=True)


def stop_pool(hv: Hypervisor, name: str) -> None:
    """Deactivate a pool; refused while a running VM has a disk in it."""
    pool = _active(hv, name)
    usage = storage_usage.scan(hv)
    running = [vm for vm in pool_users(hv, pool, usage) if vm in usage.running]
    if running:
        raise Conflict(f"pool {name!r} holds disks of running VMs: {', '.join(running)}",
                       hint="stop those VMs first ({cmd:stop VM})", code="pool.in_use")
    pool.stop()


def remove_pool(hv: Hypervisor, name: str, *, delete_data: bool = False, report: Reporter = QUIET) -> list[str]:
    """Stop and undefine a pool; with ``delete_data`` also delete its file volumes and, when kvmhub made it
    (its record is in the directory), what build() made. Subdirectories and a directory that was there
    before the pool are kept, and the returned lines say so.

    Refused (Conflict, naming them) while any VM, defined or running, has a disk in the pool.
    Returns what was done.
    """
    with Operation(hv, "pool.rm", name, locks=[LockSpec("pool", name)], report=report) as op:
        done = _remove(hv, name, delete_data, op, report)
        op.success()
    return done


def _remove(hv: Hypervisor, name: str, delete_data: bool, op: Operation, report: Reporter) -> list[str]:
    # removing is not undone: each step is journalled so an interrupted rm shows in `ops show`
    pool = hv_storage.lookup_pool(hv, name)
    users = pool_users(hv, pool)
    if users:
        raise Conflict(
            f"pool {name!r} holds disks of VMs: {', '.join(users)}",
            cause="removing the pool would leave those VMs without their disks",
            hint="remove those VMs ({cmd:rm VM}) or move their disks out of the pool first", code="pool.in_use",
        )
    done = []
    xml = pool.xml()
    kind = xml_pool.pool_type_from_xml(xml)
    subdirs = []
    if delete_data:
        if not pool.is_active():
            pool.start()
        for vol_name in sorted(pool.volume_names()):
            vol = pool.volume(vol_name)
            if parse(vol.xml(), "volume").get("type") == "dir":
                subdirs.append(vol_name)  # kvmhub makes files only: a directory in the pool is someone's data
                continue
            report.phase(f"deleting volume {vol_name}")
            op.add(f"delete volume {name}/{vol_name}")
            vol.delete()
            done.append(f"volume {name}/{vol_name} deleted")
    if pool.is_active():
        op.add(f"stop pool {name}")
        pool.stop()
    path = xml_pool.pool_path_from_xml(xml)
    if delete_data and kind in _BUILT and not _made_by_kvmhub(hv, path):
        done.append(f"directory {path} kept: it was there before the pool (kvmhub removes only directories it made)")
    elif delete_data and subdirs:
        done.append(f"directory {path} kept: it holds directories kvmhub did not make ({', '.join(subdirs)})")
    elif delete_data and kind in _DELETABLE:
        report.phase("removing the pool's storage")
        op.add(f"remove {path or kind}")
        root = local_root(hv)
        if root is not None and path is not None and kind in _BUILT:
            _unlink(f"{root}{path}/{hv_storage.CREATED_MARKER}")
        pool.delete_storage()
        done.append(f"{path or kind} removed")
    elif not delete_data and path and kind in _BUILT:
        done.append(f"data kept in {path}")
    op.add(f"undefine pool {name}")
    pool.undefine()
    done.append(f"pool {name} removed")
    return done
