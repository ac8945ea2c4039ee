"""Shared folders: a host directory a VM sees through virtiofs (or 9p), added and removed live when libvirt can.

Host directories are confined to the roots the host's admin lists in ``shares.roots`` of kvmhub's settings file
(:mod:`kvmhub.services.host.config`); ``/``, ``/etc``, libvirt's and kvmhub's state and the kernel's pseudo file
systems are never shared, nor anything holding them, whatever the roots say. A share added to a running VM that
can take it live is mounted in the guest at ``/mnt/TAG`` through the guest agent.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound
from kvmhub.hv import Hypervisor
from kvmhub.hv import domains as hv_domains
from kvmhub.hv.agent import Agent
from kvmhub.models.share import ShareAddRequest, ShareChange, ShareInfo, ShareSpec
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services import undo_actions
from kvmhub.services.host import config
from kvmhub.services.vm import lifecycle as vms
from kvmhub.xml.filesystem import (
    filesystem_to_xml,
    has_shared_memory,
    share_element,
    shares_from_xml,
    with_share,
    without_share,
)

# never shared, nor any directory below or above them (sharing /var would share /var/lib/libvirt)
NEVER_SHARED = ("/etc", "/var/lib/libvirt", "/var/lib/kvmhub", "/boot", "/proc", "/sys", "/dev", "/run")
GUEST_DIR = "/mnt"
ROOTS_KEY = "shares.roots"
_AGENT_WAIT = 20.0
_NO_READONLY_VIRTIOFS = ("libvirt and QEMU's virtiofsd have no read-only mode for virtiofs (libvirt refuses "
                         "<readonly/> on it), and a mount option in the guest would not bind the guest's root")
_RESTART_MEMORY = "virtiofs needs the VM's memory shared with virtiofsd, which only a fresh start of QEMU gives"
_RESTART_9P = "QEMU cannot plug a 9p share into a running VM"


def guest_dir(tag: str) -> str:
    """Where kvmhub mounts the share tagged ``tag`` in the guest."""
    return f"{GUEST_DIR}/{tag}"


def confine(source: str, roots: list[str], settings: Path) -> str:
    """The real path of host directory ``source`` (symlinks and ``..`` resolved), or InvalidInput when it is not
    an existing directory inside one of ``roots``, or is (or holds) a directory never shared.

    ``settings`` is the file the roots come from, named in the refusal so the admin knows what to change.
    """
    if not source.startswith("/"):
        raise InvalidInput(f"host directory {source!r} is not an absolute path", hint="give it from / on")
    try:
        real = Path(source).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise InvalidInput(f"host directory {source} does not exist", cause=str(exc)) from exc
    if not real.is_dir():
        raise InvalidInput(f"host path {source} is not a directory", hint="share a directory")
    shown = source if str(real) == source else f"{source} (really {real})"
    if real == Path("/") or any(_overlaps(real, Path(n)) for n in NEVER_SHARED):
        raise InvalidInput(f"host directory {shown} is never shared",
                           cause="it is, holds or lies in /, /etc or the state of libvirt, kvmhub or the kernel",
                           hint="share a directory made for the guest", code="share.path_refused")
    allowed = [r for root in roots if (r := _real_root(root)) is not None]
    if not any(real == root or root in real.parents for root in allowed):
        listed = ", ".join(roots) if roots else "none"
        raise InvalidInput(
            f"host directory {shown} is outside the roots allowed for shares",
            cause=f"{ROOTS_KEY} in {settings} lists: {listed}",
            hint=f'the host\'s admin adds a root to {ROOTS_KEY} in {settings}, e.g. [shares] roots = ["/srv/shares"]',
            code="share.path_refused")
    return str(real)


def _overlaps(path: Path, never: Path) -> bool:
    return path == never or never in path.parents or path in never.parents


def _real_root(root: str) -> Path | None:
    if not root.startswith("/"):
        return None  # a relative root would depend on where kvmhub runs
    try:
        return Path(root).resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def default_tag(source: str, taken: set[str]) -> str:
    """A mount tag from the directory's name (``/srv/shares/My Data`` -> ``My_Data``), made unique."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).name).lstrip("_.-")[:28] or "share"
    tag, n = base, 1
    while tag in taken:
        tag, n = f"{base}-{n}", n + 1
    return tag


def list_shares(hv: Hypervisor, vm: str) -> list[ShareInfo]:
    """A VM's shares as its definition holds them, each marked attached when the running VM has it now."""
    dom = vms.get(hv, vm)
    live = {s.tag for s in shares_from_xml(dom.xml())} if dom.is_active() else set()
    return [ShareInfo(**s.model_dump(), attached=s.tag in live) for s in shares_from_xml(dom.xml(inactive=True))]


def find(hv: Hypervisor, vm: str, tag: str) -> ShareSpec:
    """The VM's share tagged ``tag`` (NotFound ``share.not_found``)."""
    for share in shares_from_xml(vms.get(hv, vm).xml(inactive=True)):
        if share.tag == tag:
            return share
    raise NotFound(f"VM {vm} has no share tagged {tag!r}", hint=f"{{cmd:share ls {vm}}} lists them",
                   code="share.not_found")


def check(hv: Hypervisor, vm: str, req: ShareAddRequest) -> ShareSpec:
    """The share ``req`` asks for, once everything about it is known to be acceptable; nothing is changed.

    Raises NotFound (no such VM), InvalidInput (a directory outside the allowed roots, or read-only virtiofs)
    or Conflict (the tag is taken).
    """
    dom = vms.get(hv, vm)
    taken = {s.tag for s in shares_from_xml(dom.xml(inactive=True))}
    share = _spec(req, config.load(), taken)
    if share.tag in taken:
        raise Conflict(f"VM {vm} already has a share tagged {share.tag!r}", hint="pick another {opt:tag}",
                       code="name.taken")
    return share


def plan(requests: list[ShareAddRequest]) -> list[ShareSpec]:
    """The shares a new VM is made with (`create --share`), each checked as `share add` checks it."""
    settings = config.load()
    planned: list[ShareSpec] = []
    for req in requests:
        share = _spec(req, settings, {s.tag for s in planned})
        if share.tag in {s.tag for s in planned}:
            raise InvalidInput(f"two shares are tagged {share.tag!r}", hint="give each its own tag: HOSTDIR:TAG")
        planned.append(share)
    return planned


def mount_commands(planned: list[ShareSpec]) -> list[str]:
    """First-boot commands (the seed's runcmd) mounting each share at /mnt/TAG, unless something mounted it
    already (an fstab entry). Tags hold only letters, digits, '_', '.' and '-': nothing a shell would read."""
    commands = []
    for share in planned:
        where = guest_dir(share.tag)
        commands.append(f"mkdir -p {where} && (grep -qs ' {where} ' /proc/mounts || {_mount_command(share)})")
    return commands


def _mount_command(share: ShareSpec) -> str:
    how = "-t virtiofs" if share.mode == "virtiofs" else "-t 9p -o trans=virtio,version=9p2000.L"
    return f"mount {how} {share.tag} {guest_dir(share.tag)}"


def _spec(req: ShareAddRequest, settings: config.Config, taken: set[str]) -> ShareSpec:
    if req.readonly and req.mode == "virtiofs":
        raise InvalidInput("a virtiofs share cannot be read-only", cause=_NO_READONLY_VIRTIOFS,
                           hint="share it writable, or use {opt:mode} 9p (its read-only mode is enforced by QEMU; "
                                "the guest kernel needs 9p)")
    source = confine(req.source, settings.share_roots, settings.path)
    return ShareSpec(tag=req.tag or default_tag(source, taken), source=source, mode=req.mode, readonly=req.readonly)


def add(hv: Hypervisor, vm: str, req: ShareAddRequest, *, report: Reporter = QUIET) -> ShareChange:
    """Share a host directory with the VM: always in its definition; plugged in live and mounted at /mnt/TAG when
    it runs and can take it (virtiofs with shared memory). Otherwise the result says the VM needs a restart and
    why (virtiofs: its memory is made shared in the definition; 9p: QEMU has no 9p hot-plug)."""
    share = check(hv, vm, req)
    dom = vms.get(hv, vm)
    running = dom.is_active()
    live_ok = running and share.mode == "virtiofs" and has_shared_memory(dom.xml())
    report.phase(f"sharing {share.source} as {share.tag}")
    with Operation(hv, "share.add", vm, locks=[LockSpec("vm", vm)]) as op:
        before = dom.xml(inactive=True)
        device = filesystem_to_xml(share)
        if live_ok:
            op.add(f"unplug share {share.tag}", undo_actions.remove_device(dom.uuid, vm, device, before))
            dom.attach_device(device)
        else:
            op.add(f"put back the definition of {vm}", undo_actions.redefine_domain(dom.uuid, vm, before))
            hv_domains.define(hv, with_share(before, share))
        op.success()
    if live_ok:
        report.phase(f"mounting {share.tag} in the guest")
        mounted, note = _mount(dom, share)
        return ShareChange(share=share, live=True, mounted=mounted, note=note)
    reason = (_RESTART_9P if share.mode == "9p" else _RESTART_MEMORY) if running else None
    note = f"once the VM has it, mount it in the guest: mkdir -p {guest_dir(share.tag)} && {_mount_command(share)}"
    return ShareChange(share=share, live=False, restart=running, reason=reason, note=note)


def remove(hv: Hypervisor, vm: str, tag: str, *, report: Reporter = QUIET) -> ShareChange:
    """Stop sharing: unmounted in the guest and unplugged when the running VM has it (virtiofs), always taken out
    of the definition. A 9p share a running VM has stays until it stops (the result says so)."""
    share = find(hv, vm, tag)
    dom = vms.get(hv, vm)
    live_el = share_element(dom.xml(), tag) if dom.is_active() else None
    unplug = live_el is not None and share.mode == "virtiofs"
    note = None
    if unplug:
        report.phase(f"unmounting {tag} in the guest")
        note = _unmount(dom, tag)
    report.phase(f"removing share {tag}")
    with Operation(hv, "share.rm", vm, locks=[LockSpec("vm", vm)]) as op:
        op.add(f"remove share {tag}")  # a removal is not undone; the step shows in `ops show`
        if unplug:
            assert live_el is not None
            dom.detach_device(live_el)
        else:
            hv_domains.define(hv, without_share(dom.xml(inactive=True), tag))
        op.success()
    stays = live_el is not None and not unplug
    return ShareChange(share=share, live=unplug, restart=stays, reason=_RESTART_9P if stays else None, note=note)


def live_migration_blocker(domain_xml: str) -> str | None:
    """Why a VM with this (live) definition cannot be migrated live, or None: a shared folder is a directory of
    this host that virtiofsd or QEMU holds open, and neither can move its state to another host."""
    tags = [s.tag for s in shares_from_xml(domain_xml)]
    if not tags:
        return None
    return (f"it has shared folders ({', '.join(tags)}): their host directories stay on this host, and virtiofsd "
            "and QEMU's 9p server cannot carry their open files to another")


def check_live_migration(hv: Hypervisor, vm: str) -> None:
    """Conflict when the running VM ``vm`` has a share, naming the shares and the way out (for `migrate`)."""
    reason = live_migration_blocker(vms.get(hv, vm).xml())
    if reason is not None:
        raise Conflict(f"VM {vm} cannot be migrated live", cause=reason,
                       hint=f"remove its shares first ({{cmd:share rm {vm} TAG}}), or migrate it shut off")


def _mount(dom: hv_domains.Domain, share: ShareSpec) -> tuple[str | None, str | None]:
    """Mount the share in the running guest through its agent: (where, None), or (None, why not)."""
    where = guest_dir(share.tag)
    by_hand = f"in the guest: mkdir -p {where} && {_mount_command(share)}"
    try:
        code, err = _guest_run(dom, ["mkdir", "-p", where])
        if code == 0:
            code, err = _mount_when_known(dom, share.tag, where)
    except KvmhubError as exc:
        return None, f"not mounted: the guest agent did not answer ({exc.message}); {by_hand}"
    if code != 0:
        return None, f"not mounted: mount exited {code}: {err.strip()}; {by_hand}"
    return where, None


def _mount_when_known(dom: hv_domains.Domain, tag: str, where: str) -> tuple[int, str]:
    deadline = time.monotonic() + _AGENT_WAIT
    while True:
        code, err = _guest_run(dom, ["mount", "-t", "virtiofs", tag, where])
        # a device just plugged in: the guest kernel learns its tag a moment later (until then: EINVAL)
        if code == 0 or "Invalid argument" not in err or time.monotonic() > deadline:
            return code, err
        time.sleep(0.5)


def _unmount(dom: hv_domains.Domain, tag: str) -> str | None:
    """Unmount the share from the guest when it is mounted where kvmhub puts it; a note when that failed."""
    try:
        code, err = _guest_run(dom, ["umount", guest_dir(tag)])
    except KvmhubError as exc:
        return f"not unmounted in the guest: its agent did not answer ({exc.message})"
    if code != 0 and "not mounted" not in err and "Invalid argument" not in err:
        return f"not unmounted in the guest: umount exited {code}: {err.strip()}"
    return None


def _guest_run(dom: hv_domains.Domain, argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` in the guest through its agent and wait for it: (exit code, stderr)."""
    ag = Agent(dom)
    pid = ag.exec(argv)
    deadline = time.monotonic() + _AGENT_WAIT
    while time.monotonic() < deadline:
        status = ag.exec_status(pid)
        if status.exited:
            return status.shell_code, status.err.decode(errors="replace")
        time.sleep(0.1)
    return -1, f"{argv[0]} did not finish within {_AGENT_WAIT:.0f} s"
