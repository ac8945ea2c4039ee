"""Save and restore: stop a VM with its memory state on disk, then bring it back exactly where it was.

Without a file, libvirt's managed save keeps the state with the VM: ``kvmhub restore`` (or plain
``kvmhub start``, libvirt resumes a managed save natively) brings it back. With a file the state goes to a
path on the host, so a host that sees the same disks can restore it too (the VM need not be defined there).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from kvmhub import faults
from kvmhub.errors import Conflict, InvalidInput, NotFound
from kvmhub.hv import Hypervisor, host_files_here, host_root
from kvmhub.hv import domains as hv_domains
from kvmhub.hv import saves as hv_saves
from kvmhub.ops.actions import Action, Context, register
from kvmhub.ops.locks import LockSpec
from kvmhub.ops.operation import Operation
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.vm.lifecycle import get as get_vm
from kvmhub.validate import check_name
from kvmhub.xml.domain import domain_from_xml


def _quiet(_msg: str) -> None:
    pass


def _host_path(hv: Hypervisor, path: str) -> str | None:
    """Where a host path can be seen from here (None for a remote host)."""
    if not host_files_here(hv.uri):
        return None
    return host_root() + path


def _check_file(path: str) -> str:
    if not os.path.isabs(path):
        raise InvalidInput(f"the save file must be an absolute path on the host, not {path!r}",
                           hint=f"for example {os.path.join('/var/lib/libvirt/save', os.path.basename(path))}")
    return os.path.normpath(path)


def has_saved_state(hv: Hypervisor, name: str) -> bool:
    """True when the VM has a managed save (its next start resumes it)."""
    return hv_saves.has_managed_save(get_vm(hv, name))


def save(hv: Hypervisor, name: str, *, file: str | None = None, report: Reporter = QUIET) -> str:
    """Stop running/paused VM `name` with its memory state on disk; returns where the state went.

    Raises Conflict for a VM that is not running or a save file that already exists.
    """
    locks = [LockSpec("vm", name)] + ([LockSpec("file", os.path.normpath(file))] if file is not None else [])
    with Operation(hv, "vm.save", name, locks=locks, report=report) as op:
        where = _save(hv, name, file, op, report)
        op.success()
    return where


def _save(hv: Hypervisor, name: str, file: str | None, op: Operation, report: Reporter) -> str:
    dom = get_vm(hv, name)
    state = dom.state()
    if state not in ("running", "paused"):
        raise Conflict(f"cannot save VM {name}: it is {state}",
                       cause="only a running or paused VM has a memory state to save",
                       hint=f"start it: {{cmd:start {name}}}" if state == "shut off" else None, code="vm.wrong_state")
    if file is None:
        report.phase(f"saving the memory state of {name} (managed save)")
        op.add(f"managed save of {name}")  # libvirt keeps or drops the whole state itself
        hv_saves.managed_save(dom)
        return "managed save"
    path = _check_file(file)
    seen = _host_path(hv, path)
    if seen is not None and os.path.exists(seen):
        raise Conflict(f"{path} already exists", cause="kvmhub never overwrites a save file",
                       hint="pick another {opt:file}, or remove the old one")
    report.phase(f"saving the memory state of {name} to {path}")
    op.add(f"remove {path} unless it holds {name}'s state", Action("save.abandon", {"uuid": dom.uuid, "path": path}))
    hv_saves.save_to_file(dom, path)
    faults.point("save-file")
    return path


@register("save.abandon")
def _abandon(ctx: Context, p: dict[str, Any]) -> None:
    """Undo of an unfinished save to a file: the VM still runs, so the file is not its state and goes."""
    dom = hv_domains.lookup_uuid(ctx.hv, p["uuid"])
    if dom is None or not dom.is_active():
        return  # the save completed: the file is the VM's only state now, never removed
    with contextlib.suppress(FileNotFoundError):
        os.unlink(ctx.path(p["path"]))


def restore(
    hv: Hypervisor, name: str, *, file: str | None = None, running: bool = False, paused: bool = False,
    report: Reporter = QUIET,
) -> str:
    """Resume VM `name` from its managed save or from `file`; returns the VM's state after.

    The VM comes back in the state it was saved in unless `running`/`paused` say otherwise. Raises Conflict
    for a VM that is running or has no saved state, InvalidInput for a file holding another VM.
    """
    check_name(name)
    if running and paused:
        raise InvalidInput("{opt:running} and {opt:paused} contradict each other", hint="pick one")
    with Operation(hv, "vm.restore", name, locks=[LockSpec("vm", name)], report=report) as op:
        # resuming is not undone: a VM that came back is left running (or paused) as restored
        op.add(f"restore {name} from {file or 'its managed save'}")
        state = _restore(hv, name, file, running, paused, report)
        op.success()
    return state


def _restore(hv: Hypervisor, name: str, file: str | None, running: bool, paused: bool, report: Reporter) -> str:
    if file is None:
        dom = get_vm(hv, name)
        _require_off(dom, "restore")
        if not hv_saves.has_managed_save(dom):
            raise Conflict(f"VM {name} has no saved state",
                           cause="it was not stopped with {cmd:save} (or the state was discarded)",
                           hint=f"boot it: {{cmd:start {name}}}; or restore a file: "
                                f"{{cmd:restore {name} --file FILE}}")
        report.phase(f"resuming {name} from its managed save")
        if paused:
            hv_saves.start_paused(dom)
        else:
            dom.start()
            if running and dom.state() == "paused":
                dom.resume()
        return dom.state()
    path = _check_file(file)
    seen = _host_path(hv, path)
    if seen is not None and not os.path.exists(seen):
        raise NotFound(f"no save file {path} on the host", hint="{cmd:save NAME --file F} makes one")
    saved = domain_from_xml(hv_saves.save_file_xml(hv, path))
    if saved.name != name:
        raise InvalidInput(f"{path} holds the state of VM {saved.name}, not {name}",
                           hint=f"{{cmd:restore {saved.name} --file {path}}}")
    if hv_domains.exists(hv, name):
        dom = get_vm(hv, name)
        _require_off(dom, "restore")
        if saved.uuid and dom.uuid != saved.uuid:
            raise Conflict(f"{path} holds another VM called {name} (UUID {saved.uuid}, this one is {dom.uuid})",
                           hint="remove or rename the VM defined here first")
    report.phase(f"restoring {name} from {path}")
    hv_saves.restore_from_file(hv, path, running=running, paused=paused)
    return hv_domains.lookup(hv, name).state()


def discard(hv: Hypervisor, name: str) -> None:
    """Drop the VM's managed save: its next start boots afresh (raises Conflict if it has none)."""
    with Operation(hv, "vm.discard", name, locks=[LockSpec("vm", name)]) as op:
        dom = get_vm(hv, name)
        if not hv_saves.has_managed_save(dom):
            raise Conflict(f"VM {name} has no saved state")
        op.add(f"drop the managed save of {name}")
        hv_saves.remove_managed_save(dom)
        op.success()


def _require_off(dom: hv_domains.Domain, action: str) -> None:
    state = dom.state()
    if state != "shut off":
        raise Conflict(f"cannot {action} VM {dom.name}: it is {state}",
                       cause="restoring replaces the running VM's memory; only a stopped VM can take it",
                       hint=f"stop it first: {{cmd:stop {dom.name}}} (or {{cmd:save {dom.name}}})",
                       code="vm.wrong_state")
