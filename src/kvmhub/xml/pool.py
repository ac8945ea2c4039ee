"""``<pool>``: storage pools (dir, fs, netfs, logical, iscsi, iscsi-direct, rbd)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from kvmhub.errors import InvalidInput
from kvmhub.models import PoolSpec
from kvmhub.xml._util import Element, child_text, choices, expect_root, make, parse, serialize, sub

POOL_TYPES = choices(PoolSpec, "type")
FS_FORMATS = ("auto", "ext2", "ext3", "ext4", "xfs", "vfat", "iso9660", "udf", "ufs", "gfs", "gfs2", "hfs+",
              "ocfs2", "vmfs")
# the host's own file system: a pool may not lie in these (nor be one of the parents in _FORBIDDEN_EXACT)
_FORBIDDEN_UNDER = ("/etc", "/usr", "/boot", "/root", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                    "/proc", "/sys", "/dev", "/run", "/var/run", "/var/lock", "/var/log", "/var/spool", "/var/mail",
                    "/var/cache", "/var/backups", "/var/lib/dpkg", "/var/lib/apt", "/var/lib/systemd",
                    "/var/lib/libvirt/qemu", "/var/lib/libvirt/dnsmasq", "/var/lib/libvirt/swtpm",
                    "/var/lib/libvirt/lockd", "/var/lib/libvirt/sanlock")
_FORBIDDEN_EXACT = ("/", "/var", "/home", "/tmp", "/var/tmp", "/var/lib", "/var/lib/libvirt", "/opt", "/srv", "/mnt",
                    "/media")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:.]+\]?$")
_IQN_RE = re.compile(r"^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[A-Za-z0-9.-]+(:[A-Za-z0-9.:_-]+)?$")
_WORD_RE = re.compile(r"^[A-Za-z0-9_+.-]+$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
# which options each type takes (besides name and type); the rest are refused rather than ignored
_TAKES: dict[str, frozenset[str]] = {
    "dir": frozenset({"path"}),
    "fs": frozenset({"path", "devices", "fs_format"}),
    "netfs": frozenset({"path", "host", "export", "nfs_version"}),
    "logical": frozenset({"vg", "devices"}),
    "iscsi": frozenset({"path", "host", "port", "iqn", "initiator_iqn"}),
    "iscsi-direct": frozenset({"host", "port", "iqn", "initiator_iqn"}),
    "rbd": frozenset({"host", "port", "source_name", "auth_user", "secret_uuid"}),
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "dir": ("path",),
    "fs": ("path", "devices"),
    "netfs": ("path", "host", "export"),
    "logical": ("vg",),
    "iscsi": ("host", "iqn"),
    "iscsi-direct": ("host", "iqn", "initiator_iqn"),
    "rbd": ("host", "source_name"),
}
_OPTION = {"path": "{opt:path}", "devices": "{opt:device}", "fs_format": "{opt:fs_format}", "host": "{opt:host}",
           "port": "{opt:port}", "export": "{opt:export}", "nfs_version": "{opt:nfs_version}", "vg": "{opt:vg}",
           "iqn": "{opt:iqn}", "initiator_iqn": "{opt:initiator_iqn}", "source_name": "{opt:source_name}",
           "auth_user": "{opt:auth_user}", "secret_uuid": "{opt:secret_uuid}"}
ISCSI_BY_PATH = "/dev/disk/by-path"


def check_pool_path(path: str, what: str = "pool path", *, system_dirs: bool = True) -> str:
    """Return ``path`` if it is absolute, normalized and (``system_dirs``) not one of the host's system dirs.

    Raises InvalidInput naming the rule otherwise (relative, ``..``, ``//``, trailing ``/``, NUL, ``/etc``).
    """
    if "\x00" in path or any(ord(c) < 32 for c in path):
        raise InvalidInput(f"invalid {what} {path!r}", cause="it holds NUL or control characters")
    if not path.startswith("/"):
        raise InvalidInput(f"invalid {what} {path!r}: not absolute", hint="give a path starting with /, "
                           "e.g. /var/lib/libvirt/pools/NAME")
    if posixpath.normpath(path) != path or path.startswith("//") or "\\" in path:
        raise InvalidInput(
            f"invalid {what} {path!r}: not normalized",
            cause="a pool path may hold no '..', '.', repeated or trailing '/' (it could point elsewhere)",
            hint="write the real path, without '.', '..', doubled or trailing '/'",
        )
    if not system_dirs:
        return path
    if is_system_dir(path):
        raise InvalidInput(
            f"invalid {what} {path!r}: it is one of the host's system directories",
            cause="a pool there could expose or overwrite the host's own files as volumes",
            hint="use a directory of its own, e.g. /var/lib/libvirt/pools/NAME, /srv/NAME or /data/NAME",
        )
    return path


def is_system_dir(path: str) -> bool:
    """True for a normalized absolute ``path`` that is, or lies in, one of the host's system directories."""
    return path in _FORBIDDEN_EXACT or any(path == d or path.startswith(d + "/") for d in _FORBIDDEN_UNDER)


def check_pool_spec(spec: PoolSpec) -> PoolSpec:
    """Raise InvalidInput unless ``spec`` has what its type needs and nothing it does not take."""
    given = {k for k, v in spec.model_dump(exclude={"name", "type"}).items() if v not in (None, [])}
    extra = sorted(given - _TAKES[spec.type])
    if extra:
        raise InvalidInput(
            f"pool {spec.name!r}: a {spec.type} pool takes no {', '.join(_OPTION[e] for e in extra)}",
            hint=f"a {spec.type} pool takes: {', '.join(_OPTION[k] for k in sorted(_TAKES[spec.type]))}",
        )
    missing = [k for k in _NEEDS[spec.type] if k not in given]
    if missing:
        raise InvalidInput(
            f"pool {spec.name!r}: a {spec.type} pool needs {', '.join(_OPTION[m] for m in missing)}",
            hint=_EXAMPLES[spec.type],
        )
    if spec.path is not None:
        check_pool_path(spec.path, system_dirs=spec.type != "iscsi")
    for dev in spec.devices:
        check_pool_path(dev, "device path", system_dirs=False)
    if spec.export is not None:
        check_pool_path(spec.export, "NFS export path", system_dirs=False)
    if spec.host is not None and not _HOST_RE.fullmatch(spec.host):
        raise InvalidInput(f"pool {spec.name!r}: invalid host {spec.host!r}", hint="a host name or IP address")
    for label, iqn in (("{opt:iqn}", spec.iqn), ("{opt:initiator_iqn}", spec.initiator_iqn)):
        if iqn is not None and not _IQN_RE.fullmatch(iqn):
            raise InvalidInput(f"pool {spec.name!r}: invalid {label} {iqn!r}",
                               cause="an iSCSI qualified name looks like iqn.YYYY-MM.reversed.domain:name",
                               hint="e.g. iqn.2024-01.lab.kvmhub:disk1")
    for label, word in (("{opt:vg}", spec.vg), ("{opt:source_name}", spec.source_name),
                        ("{opt:auth_user}", spec.auth_user), ("{opt:nfs_version}", spec.nfs_version)):
        if word is not None and not _WORD_RE.fullmatch(word):
            raise InvalidInput(f"pool {spec.name!r}: invalid {label} {word!r}",
                               cause="letters, digits, '.', '_', '+' and '-' only")
    if spec.fs_format is not None and spec.fs_format not in FS_FORMATS:
        raise InvalidInput(f"pool {spec.name!r}: unknown {{opt:fs_format}} {spec.fs_format!r}",
                           hint=f"one of: {', '.join(FS_FORMATS)}")
    if (spec.auth_user is None) != (spec.secret_uuid is None):
        raise InvalidInput(f"pool {spec.name!r}: {{opt:auth_user}} and {{opt:secret_uuid}} go together",
                           hint="the secret (`virsh secret-list`) holds the key of that user")
    if spec.secret_uuid is not None and not _UUID_RE.fullmatch(spec.secret_uuid):
        raise InvalidInput(f"pool {spec.name!r}: invalid {{opt:secret_uuid}} {spec.secret_uuid!r}")
    return spec


_EXAMPLES = {
    "dir": "e.g. {opt:path} /var/lib/libvirt/pools/NAME",
    "fs": "e.g. {opt:device} /dev/sdb1 {opt:path} /var/lib/libvirt/pools/NAME [{opt:fs_format} ext4]",
    "netfs": "e.g. {opt:host} nfs.lab {opt:export} /srv/vms {opt:path} /var/lib/libvirt/pools/NAME",
    "logical": "e.g. {opt:vg} vmvg [{opt:device} /dev/sdb]",
    "iscsi": "e.g. {opt:host} san.lab {opt:iqn} iqn.2024-01.lab.san:vms {opt:path} /dev/disk/by-path",
    "iscsi-direct": "e.g. {opt:host} san.lab {opt:iqn} iqn.2024-01.lab.san:vms "
                    "{opt:initiator_iqn} iqn.2024-01.lab.kvm:host1",
    "rbd": "e.g. {opt:host} ceph-mon.lab {opt:source_name} vms [{opt:auth_user} libvirt {opt:secret_uuid} UUID]",
}


def _hosts(source: Element, spec: PoolSpec) -> None:
    port = None if spec.port is None else str(spec.port)
    sub(source, "host", {"name": spec.host, "port": port})


def pool_to_xml(spec: PoolSpec) -> str:
    """XML for ``storagePoolDefineXML``. Raises InvalidInput when the spec lacks what its type needs."""
    check_pool_spec(spec)
    root = make("pool", {"type": spec.type})
    sub(root, "name", text=spec.name)
    source = sub(root, "source")
    if spec.type == "fs":
        for dev in spec.devices:
            sub(source, "device", {"path": dev})
        sub(source, "format", {"type": spec.fs_format or "auto"})
    elif spec.type == "netfs":
        _hosts(source, spec)
        sub(source, "dir", {"path": spec.export})
        sub(source, "format", {"type": "nfs"})
        if spec.nfs_version is not None:
            sub(source, "protocol", {"ver": spec.nfs_version})
    elif spec.type == "logical":
        sub(source, "name", text=spec.vg)
        for dev in spec.devices:
            sub(source, "device", {"path": dev})
        sub(source, "format", {"type": "lvm2"})
    elif spec.type in ("iscsi", "iscsi-direct"):
        _hosts(source, spec)
        sub(source, "device", {"path": spec.iqn})
        if spec.initiator_iqn is not None:
            sub(sub(source, "initiator"), "iqn", {"name": spec.initiator_iqn})
    elif spec.type == "rbd":
        sub(source, "name", text=spec.source_name)
        _hosts(source, spec)
        if spec.auth_user is not None:
            auth = sub(source, "auth", {"type": "ceph", "username": spec.auth_user})
            sub(auth, "secret", {"uuid": spec.secret_uuid})
    if len(source) == 0:
        root.remove(source)
    target_path = {"logical": f"/dev/{spec.vg}", "iscsi": spec.path or ISCSI_BY_PATH}.get(spec.type, spec.path)
    if spec.type not in ("iscsi-direct", "rbd"):
        sub(sub(root, "target"), "path", text=target_path)
    return serialize(root)


def dir_pool_xml(name: str, path: str) -> str:
    """XML for a directory pool holding its volumes as files under ``path`` (an absolute path).

    Raises InvalidInput for a relative path or characters XML cannot carry.
    """
    if not path.startswith("/"):
        raise InvalidInput(
            f"pool {name!r}: path {path!r} is not absolute", hint="give a path starting with /"
        )
    root = make("pool", {"type": "dir"})
    sub(root, "name", text=name)
    target = sub(root, "target")
    sub(target, "path", text=path)
    return serialize(root)


def pool_from_xml(xml: str) -> PoolSpec:
    """Read a pool's XML (``virStoragePool.XMLDesc``) into a PoolSpec; unknown pool types raise InvalidInput."""
    root = parse(xml, "pool")
    expect_root(root, "pool", "pool")
    kind = root.get("type", "")
    if kind not in POOL_TYPES:
        raise InvalidInput(f"cannot read the pool XML: kvmhub does not model {kind!r} pools")
    fields: dict[str, Any] = {"name": child_text(root, "name") or "", "type": kind}
    host = root.find("source/host")
    if host is not None:
        fields["host"] = host.get("name")
        port = host.get("port")
        fields["port"] = int(port) if port and port.isdigit() else None
    devices = [d.get("path") or "" for d in root.iterfind("source/device")]
    if kind in ("fs", "logical"):
        fields["devices"] = devices
    elif kind in ("iscsi", "iscsi-direct") and devices:
        fields["iqn"] = devices[0]
    fmt = root.find("source/format")
    if kind == "fs" and fmt is not None and fmt.get("type") != "auto":
        fields["fs_format"] = fmt.get("type")
    if kind == "netfs":
        dir_el = root.find("source/dir")
        fields["export"] = dir_el.get("path") if dir_el is not None else None
        proto = root.find("source/protocol")
        fields["nfs_version"] = proto.get("ver") if proto is not None else None
    if kind == "logical":
        fields["vg"] = child_text(root, "source/name")
    if kind == "rbd":
        fields["source_name"] = child_text(root, "source/name")
        auth = root.find("source/auth")
        secret = root.find("source/auth/secret")
        fields["auth_user"] = auth.get("username") if auth is not None else None
        fields["secret_uuid"] = secret.get("uuid") if secret is not None else None
    iqn = root.find("source/initiator/iqn")
    if iqn is not None:
        fields["initiator_iqn"] = iqn.get("name")
    if kind in ("dir", "fs", "netfs", "iscsi"):
        fields["path"] = child_text(root, "target/path")
    return PoolSpec.model_validate(fields)


def pool_source_text(spec: PoolSpec) -> str | None:
    """Where a pool's storage comes from, in a line: server:/export, device, VG, IQN, Ceph pool."""
    where = spec.host if spec.port is None else f"{spec.host}:{spec.port}"
    if spec.type == "netfs":
        return f"{where}:{spec.export}"
    if spec.type == "fs":
        return ", ".join(spec.devices) or None
    if spec.type == "logical":
        return f"VG {spec.vg}" + (f" on {', '.join(spec.devices)}" if spec.devices else "")
    if spec.type in ("iscsi", "iscsi-direct"):
        return f"{where} {spec.iqn}"
    if spec.type == "rbd":
        return f"{where} ceph pool {spec.source_name}"
    return None


def pool_path_from_xml(xml: str) -> str | None:
    """The target directory (or device) path of a pool; None for pools without one (e.g. rbd)."""
    root = parse(xml, "pool")
    expect_root(root, "pool", "pool")
    return child_text(root, "target/path")


def pool_type_from_xml(xml: str) -> str:
    """A pool's type attribute (dir, netfs, iscsi-direct... also types kvmhub does not model)."""
    root = parse(xml, "pool")
    expect_root(root, "pool", "pool")
    return root.get("type", "")
