"""``/vms``: list, show, create, clone and change VMs (also those other tools made); their state changes, managed
save and removal as operations.

Routers whose paths are ``/vms/{name}/WORD`` (snapshots, disks...) are registered before this one: its
``POST /vms/{name}/{action}`` would otherwise answer for them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kvmhub.errors import Conflict, InvalidInput, NotFound
from kvmhub.models import (
    DEFAULT_PROJECT,
    Change,
    CloneRequest,
    CloneResult,
    CreateRequest,
    OperationInfo,
    Phase,
    SetRequest,
    VMInfo,
)
from kvmhub.models.nic import IPAddress
from kvmhub.models.requests_vm import CloneTarget
from kvmhub.reporting import Reporter
from kvmhub.server.auth import OPERATOR, VIEWER, Caller, admin_for_host_paths
from kvmhub.server.deps import Hv, Ops, Run
from kvmhub.server.routes.common import ACCEPTED, accepted
from kvmhub.server.scope import project_for, visible_network, visible_volume
from kvmhub.services import projects
from kvmhub.services.network import firewall
from kvmhub.services.templates import warm
from kvmhub.services.vm import clone as vm_clone
from kvmhub.services.vm import create as vm_create
from kvmhub.services.vm import firmware as vm_firmware
from kvmhub.services.vm import lifecycle as vms
from kvmhub.services.vm import listing, saves, tuning
from kvmhub.services.vm import remove as vm_remove
from kvmhub.services.vm import shares as vm_shares
from kvmhub.validate import MAX_VCPUS, check_name, parse_size

router = APIRouter(prefix="/vms", tags=["vms"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="the VM's name")]
SaveFile = Annotated[str | None, Query(min_length=1, max_length=4096,
                                       description="a save file on the server's host instead of the managed save")]
Action = Literal["start", "stop", "kill", "reboot", "pause", "resume"]


class StopOptions(BaseModel):
    """How ``stop`` waits: the ACPI power button, then (with ``force``) a kill after ``timeout`` seconds."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False
    timeout: float = Field(default=60.0, gt=0, le=3600)


@router.get("", response_model=list[VMInfo], dependencies=[VIEWER])
async def list_vms(hv: Hv, caller: Caller, runner: Run) -> Response:
    """Every VM of the caller's projects (an admin's: every VM on the host), with its state and addresses."""
    fresh = runner.busy() > 0  # an operation may be changing VMs: the kept listing may be behind it
    if caller.projects is None:  # the shared listing's JSON as it is
        kept = None if fresh else listing.kept(hv)
        body = kept[1] if kept is not None else await run_in_threadpool(listing.list_vms_json, hv, fresh=fresh)
        return Response(body, media_type="application/json")
    found = await run_in_threadpool(listing.list_vms, hv, fresh=fresh)
    mine = [v for v in found if caller.sees(v.project)]
    return Response(listing.VM_LIST.dump_json(mine), media_type="application/json")


@router.get("/{name}", response_model=VMInfo, dependencies=[VIEWER])
def show_vm(name: Name, hv: Hv) -> VMInfo:
    """One VM in full: disks, NICs, limits, consoles, boot."""
    return vms.show(hv, name)


def _name_free(hv: Hv, name: str) -> None:
    """Refuse at once a bad or taken name (the operation checks again under its lock)."""
    check_name(name, "VM")
    try:
        vms.get(hv, name)
    except NotFound:
        return
    raise Conflict(f"a VM named {name!r} already exists", hint="pick another name, or remove it first",
                   code="name.taken")


@router.post("", response_model=OperationInfo, status_code=202, responses=ACCEPTED, dependencies=[OPERATOR])
def create_vm(req: CreateRequest, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Create a VM from an image, a volume, a network export, an installer or a kernel; started unless
    ``start`` is false. The operation's result is the VM; on failure what it made is taken back. Installer media
    given as paths on the server's host need an admin; others name uploaded volumes."""
    admin_for_host_paths(caller, "installer media", *(m.path for m in (req.iso, req.location, req.kernel, req.initrd)
                                                       if m is not None))
    _name_free(hv, req.name)
    if req.template is not None:
        warm.check_request(hv, req)
    req = req.model_copy(update={"project": project_for(caller, req.project)})
    visible_network(hv, caller, req.network)
    for ref in (req.vol, *(m.volume for m in (req.iso, req.location, req.kernel, req.initrd) if m is not None)):
        visible_volume(hv, caller, ref)
    if not 1 <= req.cpus <= MAX_VCPUS:
        raise InvalidInput(f"{{opt:cpus}} {req.cpus} is out of range", hint=f"1 to {MAX_VCPUS}")
    for text, what, unit in ((req.memory, "memory", "M"), (req.max_memory, "maximum memory", "M"),
                             (req.disk, "disk size", "G")):
        if text is not None:
            parse_size(text, what=what, default_unit=unit)
    projects.check(hv, req.project or DEFAULT_PROJECT, vm_create.requested_use(req))  # again under its lock
    vm_shares.plan(req.shares)  # a directory outside the allowed roots is a 400 now
    vm_firmware.check_request(req)

    def work(report: Reporter) -> VMInfo:
        if req.template is not None:
            warm.create(hv, req, report=report)
        else:
            vm_create.create(hv, req, report=report)
        return vms.show(hv, req.name)

    return accepted(response, ops.submit("vm.create", req.name, work, vm=req.name, project=req.project))


@router.get("/{name}/ip", response_model=list[IPAddress], dependencies=[VIEWER])
def vm_addresses(name: Name, hv: Hv) -> list[IPAddress]:
    """A VM's IP addresses as known now: DHCP lease, then guest agent, then ARP (empty when none yet)."""
    return vms.ip_addresses(hv, name)


@router.patch("/{name}", response_model=list[Change], dependencies=[OPERATOR])
def change_vm(name: Name, req: SetRequest, hv: Hv) -> list[Change]:
    """Change a VM's resources and limits: applied live when it runs and QEMU can, always persisted. Answers
    each change and whether it was applied live or takes effect after a restart; a bad value changes
    nothing."""
    vms.get(hv, name)
    return tuning.set_limits(hv, name, req)


class FirewallPolicy(BaseModel):
    """A VM's firewall: ``clean-traffic`` (libvirt's anti-spoofing filter), ``allow:22,80/tcp`` or ``off``."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1, max_length=200)


@router.put("/{name}/firewall", response_model=Change, dependencies=[OPERATOR])
def set_firewall(name: Name, req: FirewallPolicy, hv: Hv) -> Change:
    """Put an nwfilter policy on every NIC of a VM: applied live when it runs, always persisted; a bad policy
    changes nothing."""
    vms.get(hv, name)
    firewall.check_policy(req.policy)
    return Change(setting="firewall", value=req.policy, live=firewall.set_policy(hv, name, req.policy))


@router.post("/{name}/clone", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def clone_vm(name: Name, target: CloneTarget, hv: Hv, ops: Ops, response: Response, caller: Caller) -> OperationInfo:
    """Clone the shut-off VM ``name`` with a new identity (name, UUID, MACs, addresses); ``linked`` makes
    copy-on-write disks. The operation's result says what was made."""
    vms.get(hv, name)
    _name_free(hv, target.name)
    req = CloneRequest(source=name, **target.model_dump(exclude={"project"}),
                       project=project_for(caller, target.project))
    visible_network(hv, caller, req.network)
    projects.check(hv, req.project or DEFAULT_PROJECT, projects.use_of_vm(hv, name))  # again under its lock

    def work(report: Reporter) -> CloneResult:
        return vm_clone.clone(hv, req, report=report)

    return accepted(response, ops.submit("vm.clone", target.name, work, vm=target.name, project=req.project))


@router.post("/{name}/save", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def save_vm(name: Name, hv: Hv, ops: Ops, response: Response, caller: Caller,
            file: SaveFile = None) -> OperationInfo:
    """Stop a running VM with its memory on disk (libvirt's managed save, or ``file`` on the server's host: admin
    only); ``restore`` (or, after a managed save, ``start``) resumes it. The result is the VM."""
    admin_for_host_paths(caller, "a save file", file)
    vms.get(hv, name)

    def work(report: Reporter) -> VMInfo:
        saves.save(hv, name, file=file, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit("vm.save", name, work, vm=name))


@router.post("/{name}/restore", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def restore_vm(name: Name, hv: Hv, ops: Ops, response: Response, caller: Caller,
               paused: Annotated[bool, Query(description="resume it paused")] = False,
               running: Annotated[bool, Query(description="resume it running whatever it was saved as")] = False,
               file: SaveFile = None) -> OperationInfo:
    """Resume a VM saved with ``save`` exactly where it was (from ``file``: admin only). The result is the VM."""
    admin_for_host_paths(caller, "a save file", file)
    vms.get(hv, name)

    def work(report: Reporter) -> VMInfo:
        saves.restore(hv, name, file=file, running=running, paused=paused, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit("vm.restore", name, work, vm=name))


class WaitOptions(BaseModel):
    """What to wait for: ``phase`` (default: network for a VM with a NIC, else booted), at most ``timeout`` s."""

    model_config = ConfigDict(extra="forbid")

    phase: Phase | None = None
    timeout: float = Field(default=300.0, gt=0, le=3600)


@router.post("/{name}/wait", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def wait_for_phase(name: Name, hv: Hv, ops: Ops, response: Response,
                   options: Annotated[WaitOptions | None, Body()] = None) -> OperationInfo:
    """Wait until a VM reaches a phase (booted, network, ready): an operation whose phases are the VM's and whose
    result is the VM; it fails naming the phase that never came."""
    vms.get(hv, name)
    wanted = options or WaitOptions()

    def work(report: Reporter) -> VMInfo:
        vms.wait(hv, name, wanted.phase or vms.default_wait_target(hv, name), wanted.timeout, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit("vm.wait", name, work, vm=name))


@router.post("/{name}/{action}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
             dependencies=[OPERATOR])
def change_state(name: Name, action: Action, hv: Hv, ops: Ops, response: Response, caller: Caller,
                 options: Annotated[StopOptions | None, Body()] = None) -> OperationInfo:
    """Start, stop (ACPI; ``force`` kills after ``timeout``), kill, reboot, pause or resume a VM."""
    check_name(name, "VM")
    vms.get(hv, name)  # a missing VM is a 404 now, not a failed operation later
    stop = options or StopOptions()

    def work(report: Reporter) -> VMInfo:
        if action == "stop":
            report.phase(vms.stop(hv, name, force=stop.force, timeout=stop.timeout, report=report))
        else:
            getattr(vms, action)(hv, name, report=report)
        return vms.show(hv, name)

    return accepted(response, ops.submit(f"vm.{action}", name, work, vm=name))


@router.delete("/{name}", response_model=OperationInfo, status_code=202, responses=ACCEPTED,
               dependencies=[OPERATOR])
def remove_vm(name: Name, hv: Hv, ops: Ops, response: Response,
              keep_disks: Annotated[bool, Query(description="keep the VM's disk and seed volumes")] = False
              ) -> OperationInfo:
    """Remove a VM: kill it if running, undefine it, delete the volumes kvmhub made for it (never the image)."""
    vms.get(hv, name)

    def work(report: Reporter) -> list[str]:
        return vm_remove.remove(hv, name, keep_disks=keep_disks, report=report)

    return accepted(response, ops.submit("vm.rm", name, work, vm=name))
