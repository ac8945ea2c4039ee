"""Copy files to and from a guest through its guest agent (``kvmhub cp``), in chunks, with progress; the bytes of a
big file go over SSH when the guest can be reached that way (:mod:`kvmhub.services.vm.guest_ssh_files`).

A file sent in is written beside its destination under a temporary name and moved into place once whole, so a
transfer that breaks off leaves the old file as it was; its permission bits are set with the guest's ``chmod``
(the agent's file calls have none). Guests without ``/bin/sh`` get the file written in place, mode unset.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Generator
from contextlib import suppress
from typing import BinaryIO, Protocol

from kvmhub.errors import Conflict, InvalidInput, KvmhubError, NotFound, OperationFailed
from kvmhub.hv import Hypervisor
from kvmhub.hv.agent import WRITE_CHUNK, Agent, GuestError, agent
from kvmhub.models.guest import GuestFileInfo
from kvmhub.reporting import QUIET, Reporter
from kvmhub.services.vm import guest_ssh_files
from kvmhub.services.vm.guest_exec import run_shell
from kvmhub.validate import check_name

MAX_PATH = 4096
_IS_DIR = 21
_NO_PARENT = 22
_MISSING = 2
_UNREADABLE = 13
_CHECK_DEST = f"""[ -d "$1" ] && exit {_IS_DIR}
[ -d "$(dirname -- "$1")" ] || exit {_NO_PARENT}
exit 0
"""
_PLACE = f"""[ -d "$2" ] && {{ rm -f -- "$1"; exit {_IS_DIR}; }}
[ -n "$3" ] && chmod "$3" "$1"
mv -f -- "$1" "$2"
"""
_CHECK_SOURCE = f"""[ -e "$1" ] || exit {_MISSING}
[ -d "$1" ] && exit {_IS_DIR}
[ -r "$1" ] || exit {_UNREADABLE}
stat -L -c '%s %a' -- "$1" 2>/dev/null
exit 0
"""
_STAT = re.compile(r"(\d+) ([0-7]{1,4})\s*")


class Source(Protocol):
    """What a file sent in is read from: a binary file, or a request body."""

    def read(self, n: int = -1, /) -> bytes: ...


def check_path(path: str) -> str:
    """A guest path kvmhub accepts: absolute, without NUL or ``..``, not ending in ``/``."""
    if not path.startswith("/") or "\0" in path or len(path) > MAX_PATH:
        raise InvalidInput(f"guest path {path[:80]!r} is not an absolute path",
                           hint="give the file's full path in the guest, e.g. VM:/root/file")
    if ".." in path.split("/"):
        raise InvalidInput(f"guest path {path[:80]!r} holds '..'", hint="give the file's path without '..'")
    if path.endswith("/"):
        raise InvalidInput(f"guest path {path[:80]!r} names a directory", hint="name the file, e.g. /tmp/NAME")
    return path


def _is_directory(name: str, path: str) -> Conflict:
    return Conflict(f"{path} is a directory in VM {name}", cause="kvmhub copies one file and never replaces a "
                    "directory", hint=f"name a file in it: {name}:{path.rstrip('/')}/NAME", code="guest.is_directory")


def _missing(name: str, path: str, why: str = "no such file") -> NotFound:
    return NotFound(f"{path} not found in VM {name}: {why}", hint="look at what is there: "
                    f"{{cmd:exec {name} -- ls -l {posixpath.dirname(path) or '/'}}}", code="guest.not_found")


def _refused(name: str, path: str, exc: GuestError) -> KvmhubError:
    said = exc.guest_message
    if re.search(r"is a directory", said, re.IGNORECASE):
        return _is_directory(name, path)
    if re.search(r"no such file", said, re.IGNORECASE):
        return _missing(name, path, "no such file or directory")
    return OperationFailed(f"cannot open {path} in VM {name}: {said}", original=exc.original)


def push(hv: Hypervisor, name: str, src: Source, length: int, path: str, *, mode: int | None = None,
         report: Reporter = QUIET) -> GuestFileInfo:
    """Write ``length`` bytes of ``src`` into guest file ``path`` of VM ``name`` (replacing a file, never a
    directory), with permission bits ``mode`` when given.

    Raises InvalidInput (a bad path, ``src`` ending early), Conflict ``guest.is_directory``, NotFound
    ``guest.not_found`` (the directory is missing), and the agent's errors (see :func:`kvmhub.hv.agent.agent`).
    """
    check_name(name, "VM")
    check_path(path)
    if mode is not None and not 0 <= mode <= 0o7777:
        raise InvalidInput(f"mode {mode:o} is not a permission mode", hint="give octal bits such as 644 or 755")
    ag = agent(hv, name)
    checked = run_shell(ag, _CHECK_DEST, path)
    if checked is not None and checked.exit_code == _IS_DIR:
        raise _is_directory(name, path)
    if checked is not None and checked.exit_code == _NO_PARENT:
        raise _missing(name, path, f"no directory {posixpath.dirname(path)}")
    target = f"{path}.kvmhub-{secrets.token_hex(4)}" if checked is not None else path
    what = f"{name}:{path}"
    sent: int | None = None
    if checked is not None and length >= guest_ssh_files.SSH_FROM:
        try:
            sent = _send_over_ssh(hv, name, src, length, target, what, report)
        except BaseException:
            run_shell(ag, 'rm -f -- "$1"', target)
            raise
    via_agent = sent is None
    if sent is None:
        sent = _send_through_agent(ag, name, src, length, path, target, what, report, cleanup=checked is not None)
    if sent < length:
        if checked is not None:
            run_shell(ag, 'rm -f -- "$1"', target)
        raise InvalidInput(f"the source ended after {sent} of {length} bytes", hint="send the whole file")
    if checked is not None:
        placed = run_shell(ag, _PLACE, target, path, "" if mode is None else f"{mode:o}")
        if placed is not None and placed.exit_code == _IS_DIR:
            raise _is_directory(name, path)
        if placed is not None and placed.exit_code != 0:
            raise OperationFailed(f"cannot put {path} in place in VM {name}: "
                                  f"{placed.err.decode(errors='replace').strip()}")
    return GuestFileInfo(path=path, size=sent, mode=mode if checked is not None else None,
                         via="agent" if via_agent else "ssh")


def _send_over_ssh(hv: Hypervisor, name: str, src: Source, length: int, target: str, what: str,
                   report: Reporter) -> int | None:
    """The bytes sent into guest file ``target`` over SSH; None when SSH cannot be used (nothing read then)."""
    address = guest_ssh_files.target(hv, name)
    if address is None:
        return None
    sent = guest_ssh_files.send(address, src, length, target, what, report)
    if isinstance(sent, str):
        report.note(f"copying through the guest agent (slower): SSH to {address.ip} failed: {sent}")
        return None
    return sent


def _send_through_agent(ag: Agent, name: str, src: Source, length: int, path: str, target: str, what: str,
                        report: Reporter, *, cleanup: bool) -> int:
    try:
        handle = ag.file_open(target, "w")
    except GuestError as exc:
        raise _refused(name, path, exc) from None
    try:
        sent = _send(ag, handle, src, length, what, report)
    except BaseException:
        with suppress(KvmhubError):
            ag.file_close(handle)
        if cleanup:
            run_shell(ag, 'rm -f -- "$1"', target)
        raise
    ag.file_close(handle)
    return sent


def _send(ag: Agent, handle: int, src: Source, length: int, what: str, report: Reporter) -> int:
    sent = 0
    report.bytes(what, 0, length)
    while sent < length:
        chunk = src.read(min(16 * WRITE_CHUNK, length - sent))
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            wrote = ag.file_write(handle, bytes(view))
            if wrote <= 0:
                raise OperationFailed(f"the guest agent wrote nothing into {what}", cause="the guest's disk may "
                                      "be full or read-only")
            view = view[wrote:]
        sent += len(chunk)
        report.bytes(what, sent, length)
    return sent


def open_source(hv: Hypervisor, name: str, path: str, *, report: Reporter = QUIET,
                ) -> tuple[GuestFileInfo, Generator[bytes, None, None]]:
    """Guest file ``path`` of VM ``name``: its size and mode, and its bytes in chunks (read as they are
    consumed; the handle is closed when the iterator ends or is closed).

    Raises NotFound ``guest.not_found``, Conflict ``guest.is_directory`` and the agent's errors before
    any byte is read.
    """
    check_name(name, "VM")
    check_path(path)
    ag = agent(hv, name)
    size: int | None = None
    mode: int | None = None
    checked = run_shell(ag, _CHECK_SOURCE, path)
    if checked is not None:
        if checked.exit_code == _MISSING:
            raise _missing(name, path)
        if checked.exit_code == _IS_DIR:
            raise _is_directory(name, path)
        if checked.exit_code == _UNREADABLE:
            raise OperationFailed(f"{path} in VM {name} cannot be read", cause="the guest agent may not read it")
        if found := _STAT.fullmatch(checked.out.decode(errors="replace")):
            size, mode = int(found.group(1)), int(found.group(2), 8)
    if size is not None and size >= guest_ssh_files.SSH_FROM and (
            chunks := _receive_over_ssh(hv, name, path, report)) is not None:
        return GuestFileInfo(path=path, size=size, mode=mode, via="ssh"), chunks
    try:
        handle = ag.file_open(path, "r")
    except GuestError as exc:
        raise _refused(name, path, exc) from None
    if size is None:
        try:
            size = ag.file_seek(handle, 0, "end")
            ag.file_seek(handle, 0, "set")
        except BaseException:
            ag.file_close(handle)
            raise
    return GuestFileInfo(path=path, size=size, mode=mode, via="agent"), _chunks(ag, handle)


def _receive_over_ssh(hv: Hypervisor, name: str, path: str, report: Reporter) -> Generator[bytes, None, None] | None:
    address = guest_ssh_files.target(hv, name)
    if address is None:
        return None
    chunks = guest_ssh_files.receive(address, path, f"{name}:{path}")
    if isinstance(chunks, str):
        report.note(f"copying through the guest agent (slower): SSH to {address.ip} failed: {chunks}")
        return None
    return chunks


def _chunks(ag: Agent, handle: int) -> Generator[bytes, None, None]:
    try:
        while True:
            data, eof = ag.file_read(handle)
            if data:
                yield data
            if eof or not data:
                return
    finally:
        with suppress(KvmhubError):
            ag.file_close(handle)


def pull(hv: Hypervisor, name: str, path: str, dst: BinaryIO, *, report: Reporter = QUIET) -> GuestFileInfo:
    """Copy guest file ``path`` of VM ``name`` into ``dst``; what was copied (its mode as the guest has it)."""
    info, chunks = open_source(hv, name, path, report=report)
    what = f"{name}:{path}"
    done = 0
    report.bytes(what, 0, info.size)
    try:
        for chunk in chunks:
            dst.write(chunk)
            done += len(chunk)
            report.bytes(what, done, max(done, info.size))
    finally:
        chunks.close()
    return info.model_copy(update={"size": done})
