"""Projects: named groups of VMs with members and quotas, kept in kvmhub's state database.

A VM belongs to the project its kvmhub metadata names (``<kvmhub:project>``); one whose metadata names none
(made by other tools or an older kvmhub) belongs to ``default``, which always exists. A network belongs to the
project kvmhub recorded for it in the state database when it made it (libvirt keeps no metadata on networks),
by name and UUID: one with no record, or whose record names another UUID (it was remade by another tool), belongs
to ``default``. Volumes made with ``vol create|clone|upload`` are recorded the same way, by pool, name and path
(see :mod:`kvmhub.services.storage.volume_projects` for whose the others are). A project's use is what it holds:
its VMs' count, maximum vCPUs, maximum memory and the capacity of their disks, the capacity of its recorded
volumes no VM uses, and its networks' count. Creates, clones, imports and resizes check it against the quotas under
the project's lock (:func:`lock`), held by the caller through the define, so two requests never both slip under
the same quota.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound, QuotaExceeded
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import networks as hv_networks
from kvmhub.hv import storage as hv_storage
from kvmhub.models import DEFAULT_PROJECT, KvmhubMeta, ProjectInfo, ProjectQuota, ProjectRequest, ProjectUse, VMSpec
from kvmhub.ops.journal import connect, transaction
from kvmhub.ops.locks import LockSpec, hold
from kvmhub.services import owners as vm_owners
from kvmhub.services.storage import usage as storage_usage
from kvmhub.validate import check_name
from kvmhub.xml.domain import domain_from_xml
from kvmhub.xml.metadata import project_from_xml

QUOTA_FIELDS = ("max_vms", "max_cpus", "max_memory", "max_disk", "max_networks")
_USE_OF = {"max_vms": "vms", "max_cpus": "cpus", "max_memory": "memory", "max_disk": "disk",
           "max_networks": "networks"}
_WHAT = {"max_vms": "VMs", "max_cpus": "vCPUs", "max_memory": "memory", "max_disk": "disk",
         "max_networks": "networks"}
_BYTES = frozenset({"max_memory", "max_disk"})
_HELD = {"max_vms": "VMs", "max_cpus": "VMs", "max_memory": "VMs", "max_disk": "VMs or volumes",
         "max_networks": "networks"}  # what the quota's hint says to remove


def not_found(name: str) -> NotFound:
    """The error for a project that does not exist (or that the caller may not see)."""
    return NotFound(f"no project named {name!r}", hint="list them: {cmd:project ls}", code="project.not_found")


def project_of(meta: KvmhubMeta) -> str:
    """The project a VM's metadata names, ``default`` when it names none."""
    return meta.project or DEFAULT_PROJECT


def lock(project: str) -> LockSpec:
    """The lock a change to a project's use holds while it checks the quota and makes what it counts."""
    return LockSpec("project", project)


@contextmanager
def holding(hv: Hypervisor, project: str) -> Iterator[None]:
    """Hold ``project``'s lock (for changes that make no Operation of their own)."""
    with hold(hv.uri, [lock(project)]):
        yield


# -- records ------------------------------------------------------------------------------------------------

def _row_info(db: sqlite3.Connection, row: tuple[object, ...]) -> ProjectInfo:
    name = str(row[0])
    members = [r[0] for r in db.execute("SELECT user FROM project_members WHERE project=? ORDER BY user", (name,))]
    quota = ProjectQuota(**dict(zip(QUOTA_FIELDS, row[2:], strict=True)))  # type: ignore[arg-type]
    return ProjectInfo(name=name, quota=quota, members=members, created=float(row[1]))  # type: ignore[arg-type]


_SELECT = "SELECT name, created, " + ", ".join(QUOTA_FIELDS) + " FROM projects"  # noqa: S608 (constant columns)


def exists(name: str) -> bool:
    """True when a project of that name exists."""
    return connect().execute("SELECT 1 FROM projects WHERE name=?", (name,)).fetchone() is not None


def resolve(name: str | None) -> str:
    """The project a request names (``default`` when it names none); NotFound when there is no such project."""
    project = name or DEFAULT_PROJECT
    if not exists(project):
        raise not_found(project)
    return project


def create_project(req: ProjectRequest) -> ProjectInfo:
    """Make a project with its quotas; Conflict (``name.taken``) when the name is in use."""
    check_name(req.name, "project")
    created = time.time()
    values = [getattr(req, f) for f in QUOTA_FIELDS]
    try:
        with transaction(connect()) as db:
            db.execute("INSERT INTO projects (name, created, " + ", ".join(QUOTA_FIELDS)  # noqa: S608 (constant)
                       + ") VALUES (?,?,?,?,?,?,?)", (req.name, created, *values))
    except sqlite3.IntegrityError:
        raise Conflict(f"a project named {req.name!r} exists already", hint="pick another name",
                       code="name.taken") from None
    return get_project(req.name)


def list_projects(hv: Hypervisor | None = None, only: frozenset[str] | None = None) -> list[ProjectInfo]:
    """Every project by name (only those in ``only`` when given), with its use when ``hv`` is given."""
    db = connect()
    found = [_row_info(db, row) for row in db.execute(_SELECT + " ORDER BY name").fetchall()
             if only is None or row[0] in only]
    if hv is not None:
        uses = use_by_project(hv)
        found = [p.model_copy(update={"use": uses.get(p.name, ProjectUse())}) for p in found]
    return found


def names() -> list[str]:
    """Every project's name."""
    return [r[0] for r in connect().execute("SELECT name FROM projects ORDER BY name")]


def get_project(name: str, hv: Hypervisor | None = None) -> ProjectInfo:
    """One project, with its use when ``hv`` is given; NotFound (``project.not_found``) when there is none."""
    db = connect()
    row = db.execute(_SELECT + " WHERE name=?", (name,)).fetchone()
    if row is None:
        raise not_found(name)
    info = _row_info(db, row)
    return info.model_copy(update={"use": use(hv, name)}) if hv is not None else info


def set_quota(name: str, quota: ProjectQuota) -> ProjectInfo:
    """Change the quotas set in ``quota`` (its fields given, None meaning unlimited); the others stay."""
    changed = [f for f in QUOTA_FIELDS if f in quota.model_fields_set]
    if not changed:
        raise InvalidInput("nothing to set", hint="give a quota, e.g. {opt:max_vms}")
    with transaction(connect()) as db:
        sql = "UPDATE projects SET " + ", ".join(f"{f}=?" for f in changed) + " WHERE name=?"  # noqa: S608
        if db.execute(sql, (*(getattr(quota, f) for f in changed), name)).rowcount == 0:
            raise not_found(name)
    return get_project(name)


def remove_project(hv: Hypervisor, name: str) -> None:
    """Remove a project; refused for ``default`` and while the project owns VMs (``project.not_empty``)."""
    if name == DEFAULT_PROJECT:
        raise Conflict("the default project cannot be removed", cause="VMs that name no project belong to it",
                       code="project.not_empty")
    if not exists(name):
        raise not_found(name)
    with holding(hv, name):
        owned = sorted(vm for vm, p in vm_owners.owners(hv).items() if p == name)
        if owned:
            raise Conflict(f"project {name!r} still owns {len(owned)} VM(s): {', '.join(owned[:5])}",
                           hint="remove them first with {cmd:rm}", code="project.not_empty")
        nets = sorted(net for net, p in network_owners(hv).items() if p == name)
        if nets:
            raise Conflict(f"project {name!r} still owns {len(nets)} network(s): {', '.join(nets[:5])}",
                           hint="remove them first with {cmd:net rm}", code="project.not_empty")
        vols = sorted(ref for ref, (_path, owner) in volume_rows(hv).items() if owner == name
                      and _live_volume(hv, ref, _path) is not None)
        if vols:
            raise Conflict(f"project {name!r} still owns {len(vols)} volume(s): {', '.join(vols[:5])}",
                           hint="remove them first with {cmd:vol rm}", code="project.not_empty")
        with transaction(connect()) as db:
            db.execute("DELETE FROM network_projects WHERE project=?", (name,))  # stale ones only: none is live
            db.execute("DELETE FROM volume_projects WHERE project=?", (name,))
            db.execute("DELETE FROM projects WHERE name=?", (name,))


def add_member(project: str, user: str) -> ProjectInfo:
    """Let ``user`` act in ``project`` (nothing changes when it may already)."""
    db = connect()
    if not exists(project):
        raise not_found(project)
    if db.execute("SELECT 1 FROM users WHERE name=?", (user,)).fetchone() is None:
        raise NotFound(f"no user named {user!r}", hint="list them: {cmd:user ls}", code="user.not_found")
    with transaction(db):
        db.execute("INSERT OR IGNORE INTO project_members (project, user) VALUES (?,?)", (project, user))
    return get_project(project)


def remove_member(project: str, user: str) -> ProjectInfo:
    """Take ``user`` out of ``project``; NotFound when it is not a member."""
    if not exists(project):
        raise not_found(project)
    with transaction(connect()) as db:
        if db.execute("DELETE FROM project_members WHERE project=? AND user=?", (project, user)).rowcount == 0:
            raise NotFound(f"{user!r} is not a member of project {project!r}",
                           hint=f"list the members: {{cmd:project show {project}}}", code="user.not_found")
    return get_project(project)


def member_of(user: str) -> list[str]:
    """The projects ``user`` is a member of."""
    return [r[0] for r in connect().execute("SELECT project FROM project_members WHERE user=? ORDER BY project",
                                            (user,))]


# -- ownership and use --------------------------------------------------------------------------------------

def vm_project(hv: Hypervisor, name: str) -> str:
    """The project VM ``name`` belongs to; NotFound (``vm.not_found``) when there is no such VM."""
    check_name(name, "VM")
    try:
        return project_from_xml(hv_domains.lookup(hv, name).metadata())  # as listings read it
    except NotFound:
        raise vm_not_found(name) from None


def vm_not_found(name: str) -> NotFound:
    """The error for a missing VM, also given for one the caller may not see (the same words: nothing leaks)."""
    return NotFound(f"no VM named {name!r}", hint="list them: {cmd:ls}", code="vm.not_found")


def disk_bytes(hv: Hypervisor, spec: VMSpec) -> int:
    """The capacity of a VM's writable disks that are libvirt volumes (network disks count nothing)."""
    total = 0
    for disk in spec.disks:
        if disk.device != "disk" or disk.readonly:
            continue
        src = disk.source
        try:
            if src.pool and src.volume:
                total += hv_storage.lookup_pool(hv, src.pool).volume(src.volume).info().capacity
            elif src.path and (vol := hv_storage.volume_by_path(hv, src.path)) is not None:
                total += vol.info().capacity
        except KvmhubError:
            continue  # a volume gone or a pool stopped: nothing to count
    return total


def use_of_spec(hv: Hypervisor, spec: VMSpec) -> ProjectUse:
    """What one VM counts for: 1 VM, its maximum vCPUs and memory, its disks' capacity."""
    return ProjectUse(vms=1, cpus=spec.max_vcpus or spec.vcpus,
                      memory=(spec.max_memory_mib or spec.memory_mib) * 1024**2, disk=disk_bytes(hv, spec))


def use_of_vm(hv: Hypervisor, name: str) -> ProjectUse:
    """What VM ``name`` counts for (NotFound ``vm.not_found`` when there is none)."""
    check_name(name, "VM")
    try:
        dom = hv_domains.lookup(hv, name)
    except NotFound:
        raise vm_not_found(name) from None
    return use_of_spec(hv, domain_from_xml(dom.xml(inactive=True)))


def use_by_project(hv: Hypervisor) -> dict[str, ProjectUse]:
    """The use of every project that owns a VM or a network."""
    out: dict[str, ProjectUse] = {}
    for dom in hv_domains.list_all(hv):
        try:
            spec = domain_from_xml(dom.xml(inactive=True))
        except NotFound:
            continue
        project = project_of(spec.meta)
        out[project] = add(out.get(project, ProjectUse()), use_of_spec(hv, spec))
    for project in network_owners(hv).values():
        out[project] = add(out.get(project, ProjectUse()), ProjectUse(networks=1))
    for project, size in unused_volume_bytes(hv).items():
        out[project] = add(out.get(project, ProjectUse()), ProjectUse(disk=size))
    return out


def use(hv: Hypervisor, project: str) -> ProjectUse:
    """What ``project``'s VMs and networks hold now."""
    return use_by_project(hv).get(project, ProjectUse())


def add(a: ProjectUse, b: ProjectUse) -> ProjectUse:
    """The sum of two uses."""
    return ProjectUse(vms=a.vms + b.vms, cpus=a.cpus + b.cpus, memory=a.memory + b.memory, disk=a.disk + b.disk,
                      networks=a.networks + b.networks)


def _amount(field: str, value: int) -> str:
    if field not in _BYTES:
        return str(value)
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.4g} {unit}"
    return f"{value} B"


def check(hv: Hypervisor, project: str, more: ProjectUse) -> None:
    """Refuse (QuotaExceeded) what would take ``project`` beyond a quota; call it holding :func:`lock`."""
    quota = get_project(project).quota
    limited = [f for f in QUOTA_FIELDS if getattr(quota, f) is not None and getattr(more, _USE_OF[f]) > 0]
    if not limited:
        return
    now = use(hv, project)
    for field in limited:
        limit, used, adding = getattr(quota, field), getattr(now, _USE_OF[field]), getattr(more, _USE_OF[field])
        if used + adding > limit:
            opt = "{opt:" + field + "}"
            raise QuotaExceeded(
                f"project {project!r} is over its {_WHAT[field]} quota: limit {_amount(field, limit)}, "
                f"in use {_amount(field, used)}, this request adds {_amount(field, adding)}",
                cause=f"{_WHAT[field]} quota ({field}) {_amount(field, limit)}; use {_amount(field, used)} "
                      f"+ {_amount(field, adding)} requested",
                hint=f"raise the quota ({{cmd:project set {project}}} {opt}), or remove "
                     f"{_HELD[field]} of the project")


# -- networks -----------------------------------------------------------------------------------------------

def _network_rows(hv: Hypervisor) -> dict[str, tuple[str, str]]:
    """Network name -> (UUID, project) as recorded for ``hv``'s host."""
    return {str(r[0]): (str(r[1]), str(r[2])) for r in connect().execute(
        "SELECT name, uuid, project FROM network_projects WHERE uri=?", (hv.uri,))}


def _owner(rows: dict[str, tuple[str, str]], net: hv_networks.Network) -> str:
    row = rows.get(net.name)
    return row[1] if row is not None and row[0] == net.uuid else DEFAULT_PROJECT


def network_owners(hv: Hypervisor) -> dict[str, str]:
    """Every network's name and the project it belongs to."""
    rows = _network_rows(hv)
    return {net.name: _owner(rows, net) for net in hv_networks.list_networks(hv)}


def network_project(hv: Hypervisor, name: str) -> str:
    """The project network ``name`` belongs to; NotFound (``network.not_found``) when there is no such network."""
    check_name(name, "network")
    return _owner(_network_rows(hv), hv_networks.lookup_network(hv, name))


def network_not_found(name: str) -> NotFound:
    """The error for a missing network, also given for one the caller may not see (the same words)."""
    return hv_networks.not_found(name)


def record_network(uri: str, name: str, uuid: str, project: str) -> None:
    """Remember that network ``name`` (``uuid``) on host ``uri`` belongs to ``project``."""
    with transaction(connect()) as db:
        db.execute("INSERT OR REPLACE INTO network_projects (uri, name, uuid, project) VALUES (?,?,?,?)",
                   (uri, name, uuid, project))


def forget_network(uri: str, name: str, uuid: str) -> None:
    """Drop the record of network ``name`` (``uuid``) only: a newer network of that name keeps its own."""
    with transaction(connect()) as db:
        db.execute("DELETE FROM network_projects WHERE uri=? AND name=? AND uuid=?", (uri, name, uuid))


# -- volumes ------------------------------------------------------------------------------------------------

def volume_rows(hv: Hypervisor) -> dict[str, tuple[str, str]]:
    """``POOL/NAME`` -> (path, project) of the volumes recorded for ``hv``'s host, stale rows included."""
    return {f"{r[0]}/{r[1]}": (str(r[2]), str(r[3])) for r in connect().execute(
        "SELECT pool, name, path, project FROM volume_projects WHERE uri=?", (hv.uri,))}


def record_volume(uri: str, ref: str, path: str, project: str) -> None:
    """Remember that volume ``ref`` (POOL/NAME, at ``path``) on host ``uri`` belongs to ``project``."""
    pool, name = ref.split("/", 1)
    with transaction(connect()) as db:
        db.execute("INSERT OR REPLACE INTO volume_projects (uri, pool, name, path, project) VALUES (?,?,?,?,?)",
                   (uri, pool, name, path, project))


def forget_volume(uri: str, ref: str) -> None:
    """Drop the record of volume ``ref`` (it was deleted)."""
    pool, name = ref.split("/", 1)
    with transaction(connect()) as db:
        db.execute("DELETE FROM volume_projects WHERE uri=? AND pool=? AND name=?", (uri, pool, name))


def _live_volume(hv: Hypervisor, ref: str, path: str) -> hv_storage.Volume | None:
    """The volume a record names while it is still the one recorded (same path), else None."""
    pool, name = ref.split("/", 1)
    try:
        vol = hv_storage.lookup_pool(hv, pool).volume(name)
    except KvmhubError:
        return None  # deleted by another tool, or its pool is stopped: nothing to count
    return vol if vol.path == path else None


def unused_volume_bytes(hv: Hypervisor) -> dict[str, int]:
    """By project: the capacity of its recorded volumes that no VM has as a disk (a VM's disks count with it)."""
    rows = volume_rows(hv)
    if not rows:
        return {}
    usage = storage_usage.scan(hv)
    out: dict[str, int] = {}
    for ref, (path, project) in rows.items():
        vol = _live_volume(hv, ref, path)
        if vol is None or usage.vms_using(vol.pool, vol.name, path):
            continue
        out[project] = out.get(project, 0) + vol.info().capacity
    return out
